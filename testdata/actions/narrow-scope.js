// An Auth0 Action that adjusts the scope after the hook.
exports.onExecuteCredentialsExchange = async (event, api) => {
  await new Promise((resolve) => setTimeout(resolve, 1));
  api.transaction.removeTargetScope('read:resource');
  api.transaction.addTargetScope('audit:write');
  api.accessToken.setCustomClaim('https://example.com/requested', event.transaction.requested_scopes);
};
