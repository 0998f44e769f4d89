// The Go relay: `/relay?seconds=N` answered with the upstream's
// `/sleep?seconds=N`, fetched with net/http's default client.
//
// Each connection is served on a goroutine, and the handler's `Get` parks
// that goroutine until the upstream answers, as the Rust relay's future
// waits on its socket. The default client's `Transport` keeps a pool of
// connections to reuse, but at most 2 idle ones per host
// (`DefaultMaxIdleConnsPerHost`): after a burst, it closes all but two of
// the connections the burst opened, and the next burst opens them again.
// The benchmark measures it as it comes, defaults and all.
//
//	go build -o go_relay benchmark/benches/futures_vs_threads/peers/go_relay.go
//	./go_relay 127.0.0.1:0 127.0.0.1:7878
//
// It prints the relay's lines, so the benchmark can count the requests in
// flight. It passes a hang-up on: `r.Context()` ends when the client goes,
// and a request made with it is cancelled.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	requested, upstream := "127.0.0.1:7879", "127.0.0.1:7878"
	if len(os.Args) > 1 {
		requested = os.Args[1]
	}
	if len(os.Args) > 2 {
		upstream = os.Args[2]
	}
	listener, err := net.Listen("tcp", requested)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: cannot listen on %s: %v\n", requested, err)
		os.Exit(1)
	}
	fmt.Printf("Listening for requests at http://%s\n", listener.Addr())

	relay := func(w http.ResponseWriter, r *http.Request) {
		seconds, err := strconv.ParseUint(r.URL.Query().Get("seconds"), 10, 32)
		if err != nil {
			w.Header().Set("content-type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintln(w, "`seconds` must be a whole number of seconds")
			return
		}
		fmt.Printf("relay sleep for %d seconds: starting\n", seconds)
		url := fmt.Sprintf("http://%s/sleep?seconds=%d", upstream, seconds)
		request, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, url, nil)
		response, err := http.DefaultClient.Do(request)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(response.Body)
			response.Body.Close()
			if err == nil && response.StatusCode != http.StatusOK {
				err = fmt.Errorf("answered %s", response.Status)
			}
		}
		w.Header().Set("content-type", "text/plain")
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "upstream %s failed: %v\n", upstream, err)
			fmt.Printf("relay sleep for %d seconds: finished with 502 Bad Gateway\n", seconds)
			return
		}
		w.Write(body)
		fmt.Printf("relay sleep for %d seconds: finished\n", seconds)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/relay", relay)
	// The benchmark's header deadline, as for every server (see servers.rs).
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 120 * time.Second}
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
