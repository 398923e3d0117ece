// Command go-peer is a go-libp2p node that agentp2p's Python interop tests
// drive over stdin/stdout.
//
// It exists to prove that our py-libp2p based node speaks the same wire
// protocols as the reference implementation: TCP + Noise + Yamux, identify,
// ping, Kademlia DHT (/ipfs/kad/1.0.0, server mode) and gossipsub; with
// -psk FILE, inside a libp2p private network (pnet, PSK v1) on that key.
//
// Theory of operation: on start the program builds the host, starts the DHT
// and gossipsub, optionally dials --bootstrap peers, then prints one "ready"
// event. From then on it reads one command per line on stdin and answers
// each with exactly one JSON line on stdout (see control.go and README.md).
// Everything that is not a JSON line goes to stderr, so stdout can be parsed
// blindly. EOF on stdin means the driver is gone: the program shuts down.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// agentVersion is what identify reports; tests assert on it.
const agentVersion = "go-peer/interop"

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	listen    []string
	bootstrap []string
	seed      *int64   // nil: random identity
	psk       pnet.PSK // nil: the public network
	// Circuit relay v2: serve as a relay (go-libp2p's relay, its default
	// limits unless -relay-unlimited), and/or reserve slots on relays.
	relayService   bool
	relayUnlimited bool
	// DCUtR: go-libp2p's hole punching service (and the relay client it needs).
	holePunch bool
	// AutoNAT v1 service: dial back peers that ask whether they are reachable.
	autonatService bool
	reserve        []string
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("go-peer", flag.ContinueOnError)
	var listen, bootstrap, reserve multiFlag
	var seed, pskFile string
	var relayService, relayUnlimited, holePunch, autonatService bool
	fs.Var(&listen, "listen", "multiaddr to listen on (repeatable; default /ip4/127.0.0.1/tcp/0)")
	fs.Var(&bootstrap, "bootstrap", "multiaddr with /p2p/<id> to connect to before ready (repeatable)")
	fs.StringVar(&seed, "seed", "", "integer seed for a deterministic Ed25519 identity (default: random)")
	fs.StringVar(&pskFile, "psk", "", "private network key file (/key/swarm/psk/1.0.0/ format); TCP only, as go-libp2p requires")
	fs.BoolVar(&relayService, "relay-service", false, "serve circuit relay v2 (hop) with go-libp2p's default limits")
	fs.BoolVar(&relayUnlimited, "relay-unlimited", false, "with -relay-service: no circuit duration or data limit")
	fs.BoolVar(&autonatService, "autonat-service", false, "serve AutoNAT v1 (go-libp2p dials back only public addresses)")
	fs.BoolVar(&holePunch, "holepunch", false, "run go-libp2p's DCUtR hole punching (enables the relay client)")
	fs.Var(&reserve, "reserve", "relay multiaddr with /p2p/<id> to reserve a slot on before ready (repeatable)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() != 0 {
		return options{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	opts := options{listen: listen, bootstrap: bootstrap, relayService: relayService,
		relayUnlimited: relayUnlimited, reserve: reserve, holePunch: holePunch,
		autonatService: autonatService}
	if len(opts.listen) == 0 {
		// Loopback only: tests must never bind a routable interface.
		opts.listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	if seed != "" {
		n, err := strconv.ParseInt(seed, 10, 64)
		if err != nil {
			return options{}, fmt.Errorf("--seed must be an integer: %w", err)
		}
		opts.seed = &n
	}
	if pskFile != "" {
		f, err := os.Open(pskFile)
		if err != nil {
			return options{}, fmt.Errorf("--psk: %w", err)
		}
		defer f.Close()
		// go-libp2p's own decoder: the reference reading of the key file.
		psk, err := pnet.DecodeV1PSK(f)
		if err != nil {
			return options{}, fmt.Errorf("--psk %s: %w", pskFile, err)
		}
		opts.psk = psk
	}
	return opts, nil
}

// identity returns the host key. With a seed the key is derived as
// Ed25519 from SHA-256("go-peer/interop seed <n>") so tests can rely on a
// stable peer ID without shipping key files.
func identity(seed *int64) (crypto.PrivKey, error) {
	if seed == nil {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		return sk, err
	}
	digest := sha256.Sum256([]byte(fmt.Sprintf("go-peer/interop seed %d", *seed)))
	raw := ed25519.NewKeyFromSeed(digest[:])
	return crypto.UnmarshalEd25519PrivateKey(raw)
}

func newHost(opts options) (host.Host, error) {
	sk, err := identity(opts.seed)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	// A test peer must not refuse streams because of memory-scaled limits
	// (bursts of 500 pubsub messages, many DHT queries): lift them.
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	// Exactly the stack py-libp2p speaks: giving Transport/Security/Muxer
	// replaces go-libp2p's defaults (QUIC, TLS, ...), so nothing else is
	// negotiated. That is also what a private network needs: go-libp2p
	// refuses QUIC, WebTransport and WebRTC with a PSK.
	var private libp2p.Option = libp2p.ChainOptions()
	if opts.psk != nil {
		private = libp2p.PrivateNetwork(opts.psk)
	}
	// The relay client (circuit transport, stop handler) only when asked:
	// the other interop tests run against exactly the stack above.
	relay := libp2p.DisableRelay()
	if len(opts.reserve) > 0 || opts.relayService || opts.holePunch {
		relay = libp2p.EnableRelay()
	}
	holePunch := libp2p.ChainOptions()
	if opts.holePunch {
		holePunch = libp2p.EnableHolePunching()
	}
	// QUIC (go-libp2p's quic-go transport) only when a listen address asks
	// for it, beside TCP: the QUIC interop test dials it both ways.
	quic := libp2p.ChainOptions()
	for _, a := range opts.listen {
		if strings.Contains(a, "/quic-v1") {
			quic = libp2p.Transport(libp2pquic.NewTransport)
		}
	}
	natService := libp2p.ChainOptions()
	if opts.autonatService {
		natService = libp2p.EnableNATService()
	}
	return libp2p.New(
		private,
		libp2p.Identity(sk),
		libp2p.ListenAddrStrings(opts.listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		quic,
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.UserAgent(agentVersion),
		libp2p.Ping(true),
		libp2p.ResourceManager(rm),
		relay,
		holePunch,
		natService,
		// Loopback addresses are the only ones we have; keep announcing them.
		libp2p.NonPublicAddrPublishing(true),
	)
}

// fullAddrs returns the host's listen addresses with /p2p/<id> appended.
func fullAddrs(h host.Host) []string {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

func run() error {
	log.SetOutput(os.Stderr)
	log.SetPrefix("go-peer: ")
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	h, err := newHost(opts)
	if err != nil {
		return err
	}
	defer h.Close()

	kad, err := newDHT(ctx, h)
	if err != nil {
		return err
	}
	defer kad.Close()

	tracer := newMeshTracer(os.Getenv("GO_PEER_DEBUG") != "")
	ps, err := newPubSub(ctx, h, tracer)
	if err != nil {
		return err
	}

	if opts.relayService {
		if err := startRelayService(h, opts.relayUnlimited); err != nil {
			return err
		}
	}
	node := &node{host: h, dht: kad, ps: ps, mesh: tracer, out: newOutput(os.Stdout), topics: &topics{ps: ps}}
	for _, s := range opts.bootstrap {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("--bootstrap %q: %w", s, err)
		}
		if _, err := node.connect(ctx, a); err != nil {
			return fmt.Errorf("--bootstrap %q: %w", s, err)
		}
	}

	for _, s := range opts.reserve {
		if err := reserveOn(ctx, h, s); err != nil {
			return fmt.Errorf("--reserve %q: %w", s, err)
		}
	}

	node.out.event(map[string]any{"event": "ready", "peer_id": h.ID().String(), "addrs": fullAddrs(h)})
	node.serve(ctx, os.Stdin)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "go-peer:", err)
		os.Exit(1)
	}
}
