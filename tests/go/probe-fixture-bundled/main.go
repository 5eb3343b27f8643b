// The probe fixture's twin on net/http's bundled HTTP/2 only (no golang.org/x/net): Go 1.26
// and before serve it from `net/http.(*http2serverConn)`, which apiscope does not hook, so
// apiscope attaches with TLS capture only. The same answers as ../probe-fixture/main.go.
//
// Usage: probe-fixture ADDR CERT KEY
package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: probe-fixture ADDR CERT KEY")
		os.Exit(2)
	}
	var served atomic.Uint64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := served.Add(1)
		w.Header().Set("Audit-Id", fmt.Sprintf("probe-fixture-%d", id))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"served-%d","namespace":"default"},"data":{"path":%q}}`, id, r.URL.Path)
	})
	server := &http.Server{
		Addr:      os.Args[1],
		Handler:   handler,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12},
	}
	fmt.Fprintln(os.Stderr, server.ListenAndServeTLS(os.Args[2], os.Args[3]))
	os.Exit(1)
}
