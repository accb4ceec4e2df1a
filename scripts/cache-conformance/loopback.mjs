// Preloaded into the suite's origin server (`node --import`): a server told to listen on a
// port alone listens on 127.0.0.1 only, not on every interface.
import net from 'node:net'

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const port = args[0]
  if (typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port))) {
    return listen.call(this, Number(port), '127.0.0.1', ...args.slice(1))
  }
  return listen.apply(this, args)
}
