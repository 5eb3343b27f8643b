// Fixture for apiscope's Go binary analysis tests: links crypto/tls (client and server, over
// loopback TCP) and net/http's HTTP/2 server so their functions and types are in the binary.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"
)

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func run() error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	serverConfig := &tls.Config{Certificates: []tls.Certificate{cert}}
	clientConfig := &tls.Config{InsecureSkipVerify: true}

	// Raw crypto/tls round trip: (*Conn).Read, Write and Close on both sides.
	listener, err := tls.Listen("tcp", "127.0.0.1:0", serverConfig)
	if err != nil {
		return err
	}
	go func() {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 64)
		n, _ := conn.Read(buf)
		conn.Write(buf[:n])
	}()
	conn, err := tls.Dial("tcp", listener.Addr().String(), clientConfig)
	if err != nil {
		return err
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	reply := make([]byte, 4)
	if _, err := conn.Read(reply); err != nil {
		return err
	}
	conn.Close()
	listener.Close()

	// HTTPS with HTTP/2 (links the standard library's vendored hpack encoder).
	httpListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	server := &http.Server{
		TLSConfig: serverConfig,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "proto=%s", r.Proto)
		}),
	}
	go server.ServeTLS(httpListener, "", "")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientConfig, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + httpListener.Addr().String() + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Printf("tls=%s http=%s\n", reply, resp.Proto)
	return server.Close()
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
