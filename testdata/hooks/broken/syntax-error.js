// A hook that does not compile: config loading must name this file and line 4.
module.exports = function (client, scope, audience, context, cb) {
  var access_token = {};
  access_token.scope = ;
  cb(null, access_token);
};
