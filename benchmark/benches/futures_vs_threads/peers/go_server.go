// The Go peer: `/sleep?seconds=N` answered after `time.Sleep`.
//
// Go's net/http serves each connection on a goroutine of its own, and the
// handler simply sleeps on it. A goroutine is not an OS thread: its stack
// starts at a few KiB, and a sleeping goroutine is parked by Go's runtime,
// which runs the others on a handful of threads. So Go writes blocking code
// and gets the economy of futures from its runtime instead of from the type
// system.
//
//	go build -o go_server benchmark/benches/futures_vs_threads/peers/go_server.go
//	./go_server 127.0.0.1:0
//
// It prints the example's lines, so the benchmark can count the requests in
// flight. `time.Sleep` does not notice a client that hangs up (select on
// `r.Context().Done()` would); the benchmark's clients never do.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func sleep(w http.ResponseWriter, r *http.Request) {
	seconds, err := strconv.ParseUint(r.URL.Query().Get("seconds"), 10, 32)
	if err != nil {
		w.Header().Set("content-type", "text/plain")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintln(w, "`seconds` must be a whole number of seconds")
		return
	}
	fmt.Printf("sleep for %d seconds once: starting\n", seconds)
	time.Sleep(time.Duration(seconds) * time.Second)
	fmt.Printf("sleep for %d seconds once: finished\n", seconds)
	w.Header().Set("content-type", "text/plain")
	fmt.Fprintf(w, "slept for %d seconds\n", seconds)
}

func main() {
	requested := "127.0.0.1:7878"
	if len(os.Args) > 1 {
		requested = os.Args[1]
	}
	listener, err := net.Listen("tcp", requested)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: cannot listen on %s: %v\n", requested, err)
		os.Exit(1)
	}
	fmt.Printf("Listening for requests at http://%s\n", listener.Addr())

	mux := http.NewServeMux()
	mux.HandleFunc("/sleep", sleep)
	// Go has no header deadline unless one is set: its zero value means none.
	// The benchmark's deadline for the Rust servers too (see servers.rs).
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 120 * time.Second}
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
