// The Node.js relay: `/relay?seconds=N` answered with the upstream's
// `/sleep?seconds=N`, fetched with the `http` module.
//
// The handler starts the upstream request and returns; the event loop calls
// back when the upstream's answer has come, as tokio wakes the Rust relay's
// task. Requests go through an agent with keep-alive on (Node's global
// agent has it on by default since Node 19; it is set here so that older
// versions measure the same), which keeps every connection a burst opened
// for reuse, with no cap on idle ones.
//
//     node benchmark/benches/futures_vs_threads/peers/node_relay.js 127.0.0.1:0 127.0.0.1:7878
//
// It prints the relay's lines, so the benchmark can count the requests in
// flight, and passes a hang-up on by destroying the upstream request.

"use strict";

const http = require("node:http");

const requested = process.argv[2] || "127.0.0.1:7879";
const upstream = process.argv[3] || "127.0.0.1:7878";
const split = (address) => {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
};
const [host, port] = split(requested);
const [upstreamHost, upstreamPort] = split(upstream);
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((request, response) => {
  const url = new URL(request.url, "http://localhost");
  if (request.method !== "GET" || url.pathname !== "/relay") {
    response.writeHead(404, { "content-type": "text/plain" });
    response.end("not found\n");
    return;
  }
  const given = url.searchParams.get("seconds") || "";
  if (!/^[0-9]{1,7}$/.test(given)) {
    response.writeHead(400, { "content-type": "text/plain" });
    response.end("`seconds` must be a whole number of seconds\n");
    return;
  }
  const seconds = Number(given);
  console.log(`relay sleep for ${seconds} seconds: starting`);
  const failed = (error) => {
    console.log(`relay sleep for ${seconds} seconds: finished with 502 Bad Gateway`);
    response.writeHead(502, { "content-type": "text/plain" });
    response.end(`upstream ${upstream} failed: ${error}\n`);
  };
  const asking = http.get(
    { host: upstreamHost, port: upstreamPort, path: `/sleep?seconds=${seconds}`, agent },
    (answer) => {
      const chunks = [];
      answer.on("data", (chunk) => chunks.push(chunk));
      answer.on("error", failed);
      answer.on("end", () => {
        if (answer.statusCode !== 200) {
          failed(`answered ${answer.statusCode}`);
          return;
        }
        console.log(`relay sleep for ${seconds} seconds: finished`);
        response.writeHead(200, { "content-type": "text/plain" });
        response.end(Buffer.concat(chunks));
      });
    },
  );
  asking.on("error", failed);
  // A client that hangs up cancels the upstream request.
  response.on("close", () => {
    if (!response.writableFinished) asking.destroy();
  });
});

// The benchmark's header deadline for every server (see servers.rs).
server.headersTimeout = 120_000;
server.requestTimeout = 0;

server.listen(port, host, () => {
  const bound = server.address();
  console.log(`Listening for requests at http://${bound.address}:${bound.port}`);
});
