package main

// The control protocol: one command per stdin line, one JSON object per
// stdout line. README.md is the reference; in short:
//
//	<n> <verb> <args...>   ->   {"id":n,"ok":true,...} | {"id":n,"ok":false,"error":"..."}
//
// Commands run concurrently (a slow DHT lookup does not hold up a ping), so
// replies can come out of order; the driver matches them by id. Asynchronous
// happenings (the ready line, pubsub messages) are {"event":...} objects.
// Nothing a driver sends can crash the program: every failure, including an
// unparseable line, becomes an error reply.

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
)

// opTimeout bounds every command that touches the network.
const opTimeout = 10 * time.Second

// maxLine bounds one command line (a 64 KiB value is 128 KiB of hex).
const maxLine = 4 << 20

// output serialises JSON lines onto stdout; one Write per line so lines
// never interleave.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

func newOutput(w io.Writer) *output { return &output{w: w} }

func (o *output) event(v map[string]any) {
	line, err := json.Marshal(v)
	if err != nil {
		log.Printf("cannot encode %v: %v", v, err)
		return
	}
	line = append(line, '\n')
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := o.w.Write(line); err != nil {
		// The driver is gone; nobody is left to talk to.
		log.Printf("stdout: %v; exiting", err)
		os.Exit(1)
	}
}

// reply is the result of one command: extra fields on success.
type reply map[string]any

type node struct {
	host   host.Host
	dht    *dht.IpfsDHT
	ps     *pubsub.PubSub
	mesh   *meshTracer
	out    *output
	topics *topics
	bench  benchState     // bench subscriptions (bench.go)
	cmds   sync.WaitGroup // in-flight commands
	subs   sync.WaitGroup // subscription forwarders
}

type handler func(ctx context.Context, args []string) (reply, error)

func (n *node) handlers() map[string]struct {
	nargs int
	fn    handler
} {
	type entry = struct {
		nargs int
		fn    handler
	}
	return map[string]entry{
		"connect":    {1, n.cmdConnect},
		"peers":      {0, n.cmdPeers},
		"conns":      {1, n.cmdConns},
		"identify":   {1, n.cmdIdentify},
		"ping":       {1, n.cmdPing},
		"put":        {2, n.cmdPut},
		"get":        {1, n.cmdGet},
		"provide":    {1, n.cmdProvide},
		"findprovs":  {2, n.cmdFindProvs},
		"findpeer":   {1, n.cmdFindPeer},
		"subscribe":  {1, n.cmdSubscribe},
		"publish":    {2, n.cmdPublish},
		"topicpeers": {1, n.cmdTopicPeers},
		"meshpeers":  {1, n.cmdMeshPeers},
		"idontwant":  {0, n.cmdIDontWant},
		"bootstrap":  {0, n.cmdBootstrap},
		"rtsize":     {0, n.cmdRTSize},
		"rtwait":     {1, n.cmdRTWait},
		"benchsub":   {1, n.cmdBenchSub},
		"benchpub":   {6, n.cmdBenchPub},
		"benchstats": {1, n.cmdBenchStats},
		"benchcount": {1, n.cmdBenchCount},
	}
}

// serve runs commands from r until "quit", EOF or ctx is cancelled.
func (n *node) serve(ctx context.Context, r io.Reader) {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		n.cmds.Wait()
		n.subs.Wait()
	}()

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), maxLine)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			log.Printf("stdin: %v", err)
		}
	}()

	table := n.handlers()
	for {
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return
		case line, ok = <-lines:
			if !ok {
				return // EOF: the driver went away.
			}
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		id, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			n.out.event(map[string]any{"id": nil, "ok": false, "error": fmt.Sprintf("first token must be an integer sequence number, got %q", fields[0])})
			continue
		}
		if len(fields) < 2 {
			n.fail(id, errors.New("missing command"))
			continue
		}
		verb, args := fields[1], fields[2:]
		if verb == "quit" {
			// Let in-flight commands finish (they are bounded by opTimeout)
			// so every command still gets its reply, then acknowledge.
			n.cmds.Wait()
			n.out.event(map[string]any{"id": id, "ok": true})
			return
		}
		h, known := table[verb]
		if !known {
			n.fail(id, fmt.Errorf("unknown command %q", verb))
			continue
		}
		if len(args) != h.nargs {
			n.fail(id, fmt.Errorf("%s takes %d argument(s), got %d", verb, h.nargs, len(args)))
			continue
		}
		n.cmds.Go(func() {
			r, err := h.fn(ctx, args)
			if err != nil {
				n.fail(id, err)
				return
			}
			msg := map[string]any{}
			for k, v := range r {
				msg[k] = v
			}
			msg["id"] = id
			msg["ok"] = true
			n.out.event(msg)
		})
	}
}

func (n *node) fail(id int64, err error) {
	n.out.event(map[string]any{"id": id, "ok": false, "error": err.Error()})
}

func parsePeer(s string) (peer.ID, error) {
	p, err := peer.Decode(s)
	if err != nil {
		return "", fmt.Errorf("bad peer id %q: %w", s, err)
	}
	return p, nil
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func parseHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bad hex data: %w", err)
	}
	return b, nil
}

func addrStrings(addrs []ma.Multiaddr) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

func peerStrings(ids []peer.ID) []string {
	out := make([]string, 0, len(ids))
	for _, p := range ids {
		out = append(out, p.String())
	}
	return out
}

// awaitIdentify blocks until identify has finished on every connection to p,
// so the peerstore holds its agent version and protocols (and the DHT has
// had the chance to consider it for its routing table).
func (n *node) awaitIdentify(ctx context.Context, p peer.ID) error {
	ids, ok := n.host.(interface{ IDService() identify.IDService })
	if !ok {
		return errors.New("host has no identify service")
	}
	conns := n.host.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return fmt.Errorf("not connected to %s", p)
	}
	for _, c := range conns {
		select {
		case <-ids.IDService().IdentifyWait(c):
		case <-ctx.Done():
			return fmt.Errorf("identify %s: %w", p, ctx.Err())
		}
	}
	return nil
}

// connect dials a /p2p/ multiaddr and waits for identify.
func (n *node) connect(ctx context.Context, a ma.Multiaddr) (peer.ID, error) {
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return "", fmt.Errorf("need a multiaddr ending in /p2p/<id>: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := n.host.Connect(ctx, *ai); err != nil {
		return "", err
	}
	return ai.ID, n.awaitIdentify(ctx, ai.ID)
}

func (n *node) cmdConnect(ctx context.Context, args []string) (reply, error) {
	a, err := ma.NewMultiaddr(args[0])
	if err != nil {
		return nil, fmt.Errorf("bad multiaddr: %w", err)
	}
	p, err := n.connect(ctx, a)
	if err != nil {
		return nil, err
	}
	return reply{"peer_id": p.String()}, nil
}

func (n *node) cmdPeers(context.Context, []string) (reply, error) {
	return reply{"peers": peerStrings(n.host.Network().Peers())}, nil
}

// cmdConns lists the connections to a peer: remote address and whether it
// is limited (a relayed connection, which hole punching replaces).
func (n *node) cmdConns(_ context.Context, args []string) (reply, error) {
	p, err := parsePeer(args[0])
	if err != nil {
		return nil, err
	}
	conns := []map[string]any{}
	for _, c := range n.host.Network().ConnsToPeer(p) {
		conns = append(conns, map[string]any{
			"remote_addr": c.RemoteMultiaddr().String(),
			"limited":     c.Stat().Limited,
			"direction":   c.Stat().Direction.String(),
		})
	}
	return reply{"conns": conns}, nil
}

func (n *node) cmdIdentify(ctx context.Context, args []string) (reply, error) {
	p, err := parsePeer(args[0])
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := n.awaitIdentify(ctx, p); err != nil {
		return nil, err
	}
	ps := n.host.Peerstore()
	agent, _ := ps.Get(p, "AgentVersion")
	version, _ := ps.Get(p, "ProtocolVersion")
	protos, err := ps.GetProtocols(p)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(protos))
	for _, pr := range protos {
		names = append(names, string(pr))
	}
	return reply{
		"agent_version":    agent,
		"protocol_version": version,
		"protocols":        names,
		"addrs":            addrStrings(ps.Addrs(p)),
	}, nil
}

func (n *node) cmdPing(ctx context.Context, args []string) (reply, error) {
	p, err := parsePeer(args[0])
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel() // also closes the ping stream
	select {
	case res := <-ping.Ping(ctx, n.host, p):
		if res.Error != nil {
			return nil, res.Error
		}
		return reply{"rtt_ms": float64(res.RTT.Microseconds()) / 1000}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (n *node) cmdPut(ctx context.Context, args []string) (reply, error) {
	value, err := parseHex(args[1])
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return reply{}, n.dht.PutValue(ctx, args[0], value)
}

func (n *node) cmdGet(ctx context.Context, args []string) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	value, err := n.dht.GetValue(ctx, args[0])
	if err != nil {
		return nil, err
	}
	return reply{"value": hex.EncodeToString(value)}, nil
}

func (n *node) cmdProvide(ctx context.Context, args []string) (reply, error) {
	c, err := keyCID(args[0])
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := n.dht.Provide(ctx, c, true); err != nil {
		return nil, err
	}
	return reply{"cid": c.String()}, nil
}

func (n *node) cmdFindProvs(ctx context.Context, args []string) (reply, error) {
	c, err := keyCID(args[0])
	if err != nil {
		return nil, err
	}
	count, err := strconv.Atoi(args[1])
	if err != nil || count < 1 {
		return nil, fmt.Errorf("count must be a positive integer, got %q", args[1])
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	providers := []string{}
	for ai := range n.dht.FindProvidersAsync(ctx, c, count) {
		providers = append(providers, ai.ID.String())
	}
	return reply{"providers": providers, "cid": c.String()}, nil
}

func (n *node) cmdFindPeer(ctx context.Context, args []string) (reply, error) {
	p, err := parsePeer(args[0])
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	ai, err := n.dht.FindPeer(ctx, p)
	if err != nil {
		return nil, err
	}
	if len(ai.Addrs) == 0 && n.host.Network().Connectedness(p) == network.Connected {
		// go-libp2p-kad-dht answers a connected peer from the peerstore
		// (FindLocal), which holds no listen addresses until identify on
		// that connection finishes: a peer that has just dialed us (another
		// node's own lookup) is "found" with none. Wait for identify, as an
		// application would before dialing, and answer from the peerstore.
		if err := n.awaitIdentify(ctx, p); err != nil {
			return nil, err
		}
		ai = n.host.Peerstore().PeerInfo(p)
	}
	return reply{"addrs": addrStrings(ai.Addrs)}, nil
}

func (n *node) cmdSubscribe(ctx context.Context, args []string) (reply, error) {
	topic := args[0]
	sub, err := n.topics.subscribe(topic)
	if err != nil {
		return nil, err
	}
	if sub != nil {
		// Not tied to this command's lifetime: the node's context (cancelled
		// by quit/EOF/signal) ends it.
		n.subs.Go(func() { n.forward(ctx, topic, sub) })
	}
	return reply{}, nil
}

// forward turns received messages into events; our own are skipped.
func (n *node) forward(ctx context.Context, topic string, sub *pubsub.Subscription) {
	defer sub.Cancel()
	self := n.host.ID()
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			return
		}
		from := msg.GetFrom()
		if msg.Local || from == self {
			continue
		}
		n.out.event(map[string]any{
			"event":         "message",
			"topic":         topic,
			"from":          from.String(),
			"received_from": msg.ReceivedFrom.String(),
			"data":          hex.EncodeToString(msg.GetData()),
			"seqno":         hex.EncodeToString(msg.GetSeqno()),
		})
	}
}

func (n *node) cmdPublish(ctx context.Context, args []string) (reply, error) {
	data, err := parseHex(args[1])
	if err != nil {
		return nil, err
	}
	tp, err := n.topics.join(args[0])
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return reply{}, tp.Publish(ctx, data)
}

// cmdTopicPeers lists peers we know to be subscribed to a topic, so a driver
// can wait for the subscription exchange before publishing.
func (n *node) cmdTopicPeers(_ context.Context, args []string) (reply, error) {
	return reply{"peers": peerStrings(n.ps.ListPeers(args[0]))}, nil
}

// cmdMeshPeers lists peers in our gossipsub mesh for a topic: once the
// remote peer is here, both sides have exchanged GRAFTs.
func (n *node) cmdMeshPeers(_ context.Context, args []string) (reply, error) {
	return reply{"peers": peerStrings(n.mesh.meshPeers(args[0]))}, nil
}

// cmdIDontWant reports gossipsub v1.2 IDONTWANT message IDs received (from
// anyone) and sent (per peer) so far.
func (n *node) cmdIDontWant(_ context.Context, _ []string) (reply, error) {
	in, out := n.mesh.idontwant()
	return reply{"received": in, "sent": out}, nil
}

func (n *node) cmdBootstrap(ctx context.Context, _ []string) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := n.dht.Bootstrap(ctx); err != nil {
		return nil, err
	}
	select {
	case err := <-n.dht.RefreshRoutingTable():
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return reply{"size": n.dht.RoutingTable().Size()}, nil
}

func (n *node) cmdRTSize(context.Context, []string) (reply, error) {
	return reply{"size": n.dht.RoutingTable().Size()}, nil
}

// cmdRTWait waits (up to opTimeout) until the routing table holds at least
// min peers. The DHT admits a peer only after identify and a FIND_NODE
// liveness check, i.e. some time after connect returns.
func (n *node) cmdRTWait(ctx context.Context, args []string) (reply, error) {
	want, err := strconv.Atoi(args[0])
	if err != nil || want < 0 {
		return nil, fmt.Errorf("min must be a non-negative integer, got %q", args[0])
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if size := n.dht.RoutingTable().Size(); size >= want {
			return reply{"size": size}, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("routing table has %d peers, wanted %d: %w", n.dht.RoutingTable().Size(), want, ctx.Err())
		}
	}
}
