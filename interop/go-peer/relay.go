package main

// Circuit relay v2 for the interop tests: go-libp2p's own relay service and
// client, so agentp2p's relay and client are checked against the reference.

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rclient "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// startRelayService mounts the hop protocol on h (go-libp2p's default
// resources, or no circuit limit at all with unlimited).
func startRelayService(h host.Host, unlimited bool) error {
	var opts []relayv2.Option
	if unlimited {
		opts = append(opts, relayv2.WithInfiniteLimits())
	}
	if _, err := relayv2.New(h, opts...); err != nil {
		return fmt.Errorf("relay service: %w", err)
	}
	return nil
}

// reserveOn connects to the relay at addr and reserves a slot there.
func reserveOn(ctx context.Context, h host.Host, addr string) error {
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		return err
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := h.Connect(ctx, *info); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if _, err := rclient.Reserve(ctx, h, *info); err != nil {
		return fmt.Errorf("reserve: %w", err)
	}
	return nil
}
