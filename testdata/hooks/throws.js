module.exports = function(client, scope, audience, context, cb) {
  throw new Error('boom');
};
