module.exports = function(client, scope, audience, context, cb) {
  // To return an HTTP 500 with { "error": "server_error", "error_description": "An error occurred." }
  return cb(new Error('An error occurred.'));
};
