// An Auth0 Action that uses an npm package from modules_dir and reads what the hook did.
const rules = require('tenant-rules');

exports.onExecuteCredentialsExchange = async (event, api) => {
  const tier = event.client.metadata.tier || 'standard';
  api.accessToken.setCustomClaim('https://example.com/max_session_seconds', rules.lifetimeSeconds(tier));
  api.accessToken.setCustomClaim('https://example.com/hook_saw', event.accessToken.customClaims['https://example.com/client']);
};
