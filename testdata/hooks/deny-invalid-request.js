module.exports = function(client, scope, audience, context, cb) {
  // To return an HTTP 400 with { "error": "invalid_request", "error_description": "Not a valid request." }
  return cb(new InvalidRequestError('Not a valid request.'));
};
