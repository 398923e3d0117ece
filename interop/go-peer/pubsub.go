package main

// Gossipsub with go-libp2p-pubsub defaults where they define the wire
// format: StrictSign and message ID = from+seqno, which is what py-libp2p's
// gossipsub produces and expects. Two deliberate departures:
//
//   - Flood publishing is on. go-libp2p-pubsub v0.19 turned it off by
//     default, so a message published before the first heartbeat grafts a
//     mesh (~100 ms after subscribing) goes to nobody: our burst test lost
//     the first few hundred messages that way. With it on, our own messages
//     go to every peer known to be subscribed, mesh or not.
//   - Queues are enlarged: tests publish bursts of hundreds of messages each
//     way, and the defaults (32-deep peer and subscription queues) drop
//     messages silently when the reader is a pipe to another process.
//
// Delivery order is not preserved even between two peers: signature checks
// run on parallel validation workers.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
)

const queueSize = 4096

func newPubSub(ctx context.Context, h host.Host, tr *meshTracer) (*pubsub.PubSub, error) {
	opts := []pubsub.Option{
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerOutboundQueueSize(queueSize),
		pubsub.WithValidateQueueSize(queueSize),
		pubsub.WithRawTracer(tr),
	}
	if tr.debug {
		// Pubsub reports most dropped input at debug level only.
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		opts = append(opts, pubsub.WithLogger(logger))
	}
	ps, err := pubsub.NewGossipSub(ctx, h, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub: %w", err)
	}
	return ps, nil
}

// topics hands out one *pubsub.Topic per name: go-libp2p-pubsub allows
// Join only once per topic, and both subscribe and publish need the handle.
type topics struct {
	ps     *pubsub.PubSub
	mu     sync.Mutex
	joined map[string]*pubsub.Topic
	subs   map[string]*pubsub.Subscription
}

func (t *topics) join(name string) (*pubsub.Topic, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp, ok := t.joined[name]; ok {
		return tp, nil
	}
	tp, err := t.ps.Join(name)
	if err != nil {
		return nil, err
	}
	if t.joined == nil {
		t.joined = map[string]*pubsub.Topic{}
	}
	t.joined[name] = tp
	return tp, nil
}

// subscribe returns a new subscription, or nil if one already exists (a
// second subscribe is a no-op rather than a source of duplicate events).
func (t *topics) subscribe(name string) (*pubsub.Subscription, error) {
	tp, err := t.join(name)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.subs[name]; ok {
		return nil, nil
	}
	sub, err := tp.Subscribe(pubsub.WithBufferSize(queueSize))
	if err != nil {
		return nil, err
	}
	if t.subs == nil {
		t.subs = map[string]*pubsub.Subscription{}
	}
	t.subs[name] = sub
	return sub, nil
}
