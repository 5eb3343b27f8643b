// An HTTPS server on golang.org/x/net/http2, configured as kube-apiserver configures it
// (http2.ConfigureServer), answering every path with a small Kubernetes-like JSON object and
// the response headers an apiserver sends. apiscope's probe tests attach to it: every probe
// of the eBPF object is exercised without a real apiserver.
//
// Usage: probe-fixture ADDR CERT KEY
package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"

	"golang.org/x/net/http2"
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
		w.Header().Set("X-Kubernetes-Pf-Flowschema-Uid", "flowschema-uid")
		w.Header().Set("X-Kubernetes-Pf-Prioritylevel-Uid", "prioritylevel-uid")
		w.Header().Set("Cache-Control", "no-cache, private")
		fmt.Fprintf(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"served-%d","namespace":"default"},"data":{"path":%q}}`, id, r.URL.Path)
	})
	server := &http.Server{
		Addr:      os.Args[1],
		Handler:   handler,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if err := http2.ConfigureServer(server, &http2.Server{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, server.ListenAndServeTLS(os.Args[2], os.Args[3]))
	os.Exit(1)
}
