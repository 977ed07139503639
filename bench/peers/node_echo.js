// node_echo.js - TCP echo server using node's net module (benchmark peer).
'use strict';
const net = require('net');

const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', 1024, () => {
  process.stdout.write(`listening on tcp 127.0.0.1:${server.address().port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
