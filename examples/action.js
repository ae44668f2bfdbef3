// An Auth0 Action the demo runs after the hook: it records which scopes the
// client asked for and keeps a per-instance count of tokens in api.cache.
exports.onExecuteCredentialsExchange = async (event, api) => {
  const record = api.cache.get('issued');
  const issued = record ? Number(record.value) + 1 : 1;
  api.cache.set('issued', String(issued), { ttl: 60 * 60 * 1000 });
  api.accessToken.setCustomClaim('https://example.com/requested_scope', event.transaction.requested_scopes.join(' '));
  api.accessToken.setCustomClaim('https://example.com/issued_here', issued);
};
