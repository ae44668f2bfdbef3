module.exports = function(client, scope, audience, context, cb) {
  // To return an HTTP 400 with { "error": "invalid_scope", "error_description": "Not authorized for this scope." }
  return cb(new InvalidScopeError('Not authorized for this scope.'));
};
