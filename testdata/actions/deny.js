// An Auth0 Action that refuses clients that ask for admin.
exports.onExecuteCredentialsExchange = async (event, api) => {
  if (event.transaction.requested_scopes.includes('admin')) {
    api.access.deny('invalid_scope', 'admin is not granted to machine clients');
  }
};
