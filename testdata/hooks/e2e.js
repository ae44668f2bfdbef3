// The end-to-end tests' hook: it reads every input and changes scope and claims.
module.exports = function (client, scope, audience, context, cb) {
  var access_token = {};
  access_token.scope = (scope || []).filter(function (s) { return s !== 'admin'; });
  access_token.scope.push('read:resource');
  access_token['https://example.com/client'] = { id: client.id, name: client.name, tenant: client.tenant, tier: client.metadata.tier };
  access_token['https://example.com/audience'] = audience;
  access_token['https://example.com/grant'] = context.body.grant_type;
  access_token['https://example.com/has_secret'] = 'client_secret' in context.body;
  access_token['https://example.com/region'] = context.webtask.secrets.REGION;
  access_token['https://tenant.auth0.com/ignored'] = 'reserved host';
  access_token.tenant_id = 'acme-eu'; // private, non-namespaced: allowed since 2022
  access_token['urn:auth0:ignored'] = 'reserved URN';
  access_token.iss = 'forged';
  cb(null, access_token);
};
