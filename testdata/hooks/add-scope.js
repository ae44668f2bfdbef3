// Auth0 docs: add a scope to the token.
module.exports = function(client, scope, audience, context, cb) {
  var access_token = {};
  access_token.scope = scope;
  access_token.scope.push('read:resource');
  cb(null, access_token);
};
