module.exports = function(client, scope, audience, context, cb) {
  // To return an HTTP 500 with { "error": "server_error", "error_description": "A server error occurred." }
  return cb(new ServerError('A server error occurred.'));
};
