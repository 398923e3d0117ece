package main

// Kademlia DHT configured to match agentp2p's py-libp2p node.
//
// Wire protocol: py-libp2p 0.8.1 hard-codes /ipfs/kad/1.0.0. go-libp2p-kad-dht
// treats the /ipfs prefix as "the public Amino DHT" and then refuses any
// validator set other than exactly {pk, ipns} (internal/config.Validate). We
// need our own namespaces, so we pick a private ProtocolPrefix (which skips
// the Amino checks) and pin the actual stream protocol back to
// /ipfs/kad/1.0.0 with V1ProtocolOverride. The default pk and ipns
// validators are still installed because we never replace the Validator.

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"
	mh "github.com/multiformats/go-multihash"
)

const (
	// kadProtocol is the only DHT protocol py-libp2p speaks.
	kadProtocol protocol.ID = "/ipfs/kad/1.0.0"
	// privatePrefix only serves to opt out of the Amino-network config checks;
	// it never appears on the wire because of V1ProtocolOverride.
	privatePrefix protocol.ID = "/agentp2p"
	// maxValueSize mirrors our Python validator's limit.
	maxValueSize = 64 * 1024
)

// permissiveValidator accepts any value up to maxValueSize and, given several,
// keeps the first. It matches agentp2p's Python validator for "agentp2p".
type permissiveValidator struct{}

func (permissiveValidator) Validate(key string, value []byte) error {
	if len(value) > maxValueSize {
		return fmt.Errorf("value for %s is %d bytes, limit %d", key, len(value), maxValueSize)
	}
	return nil
}

func (permissiveValidator) Select(_ string, values [][]byte) (int, error) {
	if len(values) == 0 {
		return 0, errors.New("no values to select from")
	}
	return 0, nil
}

func newDHT(ctx context.Context, h host.Host) (*dht.IpfsDHT, error) {
	kad, err := dht.New(h,
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(privatePrefix),
		dht.V1ProtocolOverride(kadProtocol),
		dht.NamespacedValidator("agentp2p", permissiveValidator{}),
		// TODO: "agentrec" will hold signed agent records; verify the
		// envelope signature here once the Python side defines it.
		dht.NamespacedValidator("agentrec", permissiveValidator{}),
	)
	if err != nil {
		return nil, fmt.Errorf("dht: %w", err)
	}
	if err := kad.Bootstrap(ctx); err != nil {
		kad.Close()
		return nil, fmt.Errorf("dht bootstrap: %w", err)
	}
	return kad, nil
}

// keyCID maps a provider key string to the CID our Python side provides:
// CIDv1, raw codec (0x55), sha256 multihash of the key's UTF-8 bytes. Only
// the multihash travels on the wire.
func keyCID(key string) (cid.Cid, error) {
	digest, err := mh.Sum([]byte(key), mh.SHA2_256, -1)
	if err != nil {
		return cid.Undef, err
	}
	return cid.NewCidV1(cid.Raw, digest), nil
}
