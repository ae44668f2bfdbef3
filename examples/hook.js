// The hook the built-in demo and Caddyfile.example run. It shows what Auth0
// Hooks did: narrow or widen the scope per client and add namespaced claims.
module.exports = function (client, scope, audience, context, cb) {
  var access_token = {};
  access_token.scope = (scope || []).filter(function (s) { return s !== 'admin'; });
  if (client.metadata.tier === 'gold') {
    access_token.scope.push('reports:read');
  }
  access_token['https://example.com/client_name'] = client.name;
  access_token['https://example.com/tier'] = client.metadata.tier || 'standard';
  access_token['https://example.com/requested_from'] = context.ip;
  cb(null, access_token);
};
