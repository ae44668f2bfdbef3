// Auth0 docs: add a claim. There is no scope line, so the token ends with no scope.
module.exports = function(client, scope, audience, context, cb) {
  var access_token = {};
  access_token['https://example.com/foo'] = 'bar';
  cb(null, access_token);
};
