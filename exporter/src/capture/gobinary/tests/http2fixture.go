// Fixture for apiscope's HTTP/2 header hook tests: an HTTP/2 server on golang.org/x/net/http2
// (as kube-apiserver serves, via http2.ConfigureServer), so serverConn.processHeaders,
// writeResHeaders.writeFrame, hpack.(*Encoder).WriteField and their types are linked in.
// Built only, never run by the tests; running it serves one request and exits.
package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func main() {
	server := &http.Server{
		Addr: "127.0.0.1:0",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Audit-Id", "fixture")
			w.WriteHeader(http.StatusOK)
		}),
		TLSConfig: &tls.Config{},
	}
	if err := http2.ConfigureServer(server, &http2.Server{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Keeps hpack.HeaderField's type (and the encoder) reachable on its own as well.
	field := hpack.HeaderField{Name: ":status", Value: "200"}
	fmt.Println(field.Size())
	if len(os.Args) > 1 {
		fmt.Println(server.ListenAndServeTLS(os.Args[1], os.Args[2]))
	}
}
