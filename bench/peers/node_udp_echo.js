// node_udp_echo.js - UDP echo server using node's dgram module (benchmark peer).
'use strict';
const dgram = require('dgram');

const sock = dgram.createSocket('udp4');
sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
sock.on('error', (err) => { console.error(err.message); process.exit(1); });

sock.bind(Number(process.argv[2] || 0), '127.0.0.1', () => {
  process.stdout.write(`listening on udp 127.0.0.1:${sock.address().port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
