// An action that misbehaves on demand, by the token request's "mode"
// parameter; without one it adds a claim and lets the exchange through.
exports.onExecuteCredentialsExchange = function (event, api) {
  var throwing = { toString: function () { throw new Error('toString'); },
                   get message() { throw new Error('message'); } };
  switch (event.request.body.mode) {
    case 'thenable-deny': // not a Promise: await still runs its then
      return { then: function (resolve) { api.access.deny('invalid_request', 'denied in then'); resolve(); } };
    case 'deny-throwing-args':
      try { api.access.deny(throwing, throwing); } catch (e) { /* swallowed: the deny must still hold */ }
      return;
    case 'action-throw-null-proto':
      throw Object.create(null);
    case 'action-reject-throwing':
      return Promise.reject(throwing);
  }
  api.accessToken.setCustomClaim('https://example.com/action', true);
};
