package main

// meshTracer watches gossipsub's internal events. go-libp2p-pubsub has no
// public accessor for the mesh, and tests need one: a message published
// before the mesh forms reaches only flood-publish targets, so "is peer X
// in my mesh for topic T" is the honest readiness signal. With debug on
// (GO_PEER_DEBUG=1) it also logs every decision that loses a message, so a
// failing interop test shows whether the Go side rejected, dropped or never
// received it.

import (
	"log"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

type meshTracer struct {
	debug bool
	mu    sync.Mutex
	mesh  map[string]map[peer.ID]struct{}
	// IDONTWANT message IDs (gossipsub v1.2) received from any peer, and
	// sent to each peer: interop tests check both directions.
	idontwantIn  int
	idontwantOut map[peer.ID]int
	// Losses go-libp2p-pubsub reports (benchstats): outbound RPCs dropped
	// on a full peer queue (and the messages in them), messages a slow
	// subscription could not take, and rejected messages (which includes
	// "validation throttled" / "validation queue full").
	droppedRPCs, droppedMsgs, undeliverable, rejected int
}

var _ pubsub.RawTracer = (*meshTracer)(nil)

func newMeshTracer(debug bool) *meshTracer {
	return &meshTracer{debug: debug, mesh: map[string]map[peer.ID]struct{}{}, idontwantOut: map[peer.ID]int{}}
}

// meshPeers returns the peers currently in our mesh for topic.
func (t *meshTracer) meshPeers(topic string) []peer.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]peer.ID, 0, len(t.mesh[topic]))
	for p := range t.mesh[topic] {
		out = append(out, p)
	}
	return out
}

func (t *meshTracer) logf(format string, args ...any) {
	if t.debug {
		log.Printf("pubsub: "+format, args...)
	}
}

func describe(m *pubsub.Message) string {
	return "from=" + m.GetFrom().String() + " seqno=" + hexOf(m.GetSeqno()) + " topic=" + m.GetTopic()
}

func (t *meshTracer) Graft(p peer.ID, topic string) {
	t.logf("graft %s on %s", p, topic)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mesh[topic] == nil {
		t.mesh[topic] = map[peer.ID]struct{}{}
	}
	t.mesh[topic][p] = struct{}{}
}

func (t *meshTracer) Prune(p peer.ID, topic string) {
	t.logf("prune %s on %s", p, topic)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mesh[topic], p)
}

// OnClosedOutboundStream: gossipsub drops the peer from every mesh without
// emitting Prune.
func (t *meshTracer) OnClosedOutboundStream(p peer.ID) {
	t.logf("outbound stream to %s closed", p)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, peers := range t.mesh {
		delete(peers, p)
	}
}

func (t *meshTracer) OnNewOutboundStream(p peer.ID, proto protocol.ID) {
	t.logf("outbound stream to %s (%s)", p, proto)
}

func (t *meshTracer) RejectMessage(m *pubsub.Message, reason string) {
	t.logf("rejected %s: %s", describe(m), reason)
	t.mu.Lock()
	t.rejected++
	t.mu.Unlock()
}

func (t *meshTracer) ThrottlePeer(p peer.ID) { t.logf("throttled %s", p) }

func (t *meshTracer) DropRPC(rpc *pubsub.RPC, p peer.ID) {
	t.logf("dropped outbound RPC to %s (%d messages)", p, len(rpc.GetPublish()))
	t.mu.Lock()
	t.droppedRPCs++
	t.droppedMsgs += len(rpc.GetPublish())
	t.mu.Unlock()
}

func (t *meshTracer) UndeliverableMessage(m *pubsub.Message) {
	t.logf("subscriber too slow, dropped %s", describe(m))
	t.mu.Lock()
	t.undeliverable++
	t.mu.Unlock()
}

func (*meshTracer) Join(string)                      {}
func (*meshTracer) Leave(string)                     {}
func (*meshTracer) ValidateMessage(*pubsub.Message)  {}
func (*meshTracer) DeliverMessage(*pubsub.Message)   {}
func (*meshTracer) DuplicateMessage(*pubsub.Message) {}

func idontwantIDs(rpc *pubsub.RPC) int {
	n := 0
	for _, idw := range rpc.GetControl().GetIdontwant() {
		n += len(idw.GetMessageIDs())
	}
	return n
}

func (t *meshTracer) RecvRPC(rpc *pubsub.RPC) {
	if n := idontwantIDs(rpc); n > 0 {
		t.mu.Lock()
		t.idontwantIn += n
		t.mu.Unlock()
	}
}

func (t *meshTracer) SendRPC(rpc *pubsub.RPC, p peer.ID) {
	if n := idontwantIDs(rpc); n > 0 {
		t.mu.Lock()
		t.idontwantOut[p] += n
		t.mu.Unlock()
	}
}

// idontwant returns the IDONTWANT IDs received so far and those sent per peer.
func (t *meshTracer) idontwant() (int, map[string]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.idontwantOut))
	for p, n := range t.idontwantOut {
		out[p.String()] = n
	}
	return t.idontwantIn, out
}

func (*meshTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
