// A hook that misbehaves on demand: the token request's "mode" parameter
// picks the misbehaviour, and without one it issues a normal token, so a
// test can check that the next request on the same handler still works.
module.exports = function (client, scope, audience, context, cb) {
  var throwing = { get name() { throw new Error('name'); }, get message() { throw new Error('message'); },
                   toString: function () { throw new Error('toString'); } };
  switch (context.body.mode) {
    case 'regex': // catastrophic backtracking on a client-supplied value
      if (/^([a-z]+)+\1$/.test(context.body.org)) return cb(new Error('matched'));
      break;
    case 'string-bomb':
      var s = 'x';
      while (true) s = s + s;
    case 'array-bomb':
      var a = [];
      while (true) a.push({ n: a.length });
    case 'cb-null-proto':
      return cb(Object.create(null));
    case 'cb-throwing':
      return cb(throwing);
    case 'cb-proxy':
      return cb(new Proxy({}, { get: function () { throw new Error('trap'); } }));
    case 'cb-symbol':
      return cb(Symbol('x'));
    case 'throw-null-proto':
      throw Object.create(null);
    case 'throw-throwing':
      throw throwing;
    case 'timer-throw':
      setTimeout(function () { throw Object.create(null); }, 1);
      return;
    case 'reject-throwing':
      return Promise.reject(throwing);
    case 'async-reject':
      return (async function () { await null; throw Object.create(null); })();
  }
  cb(null, { scope: scope, 'https://example.com/hooked': true });
};
