// The Node.js peer: `/sleep?seconds=N` answered from a `setTimeout`.
//
// Node runs every request's JavaScript on one thread, its event loop. A
// handler that has to wait registers a callback (here with the timer) and
// returns; the loop goes on with other connections, and calls the callback
// when the timer is due. That is the same idea as a future woken by tokio's
// timer, with a callback where Rust has a value that is polled.
//
//     node benchmark/benches/futures_vs_threads/peers/node_server.js 127.0.0.1:0
//
// It prints the example's lines, so the benchmark can count the requests in
// flight, and closes a connection that has not sent its request head within
// the benchmark's header deadline, 120 s, which every server here gets (the
// example's own default is 30 s).

"use strict";

const http = require("node:http");

const requested = process.argv[2] || "127.0.0.1:7878";
const colon = requested.lastIndexOf(":");
const host = requested.slice(0, colon);
const port = Number(requested.slice(colon + 1));

const server = http.createServer((request, response) => {
  const url = new URL(request.url, "http://localhost");
  if (request.method !== "GET" || url.pathname !== "/sleep") {
    response.writeHead(404, { "content-type": "text/plain" });
    response.end("not found\n");
    return;
  }
  const given = url.searchParams.get("seconds") || "";
  // Whole seconds only, and no larger than setTimeout can wait (about 24 days).
  const seconds = /^[0-9]{1,7}$/.test(given) ? Number(given) : NaN;
  if (!(seconds <= 2147483)) {
    response.writeHead(400, { "content-type": "text/plain" });
    response.end("`seconds` must be a whole number of seconds\n");
    return;
  }
  console.log(`sleep for ${seconds} seconds once: starting`);
  const timer = setTimeout(() => {
    console.log(`sleep for ${seconds} seconds once: finished`);
    response.writeHead(200, { "content-type": "text/plain" });
    response.end(`slept for ${seconds} seconds\n`);
  }, seconds * 1000);
  // A client that hangs up cancels its timer, as dropping a future does.
  response.on("close", () => clearTimeout(timer));
});

// The benchmark's header deadline for every server (see servers.rs);
// Node's own default is 60 s.
server.headersTimeout = 120_000;
// Node's 5-minute cap on a whole request would cut a long sleep.
server.requestTimeout = 0;

server.listen(port, host, () => {
  const bound = server.address();
  console.log(`Listening for requests at http://${bound.address}:${bound.port}`);
});
