package main

// Kademlia DHT configured to match agentp2p's node.
//
// Wire protocol: agentp2p serves /agentp2p/kad/1.0.0 by default (its own
// network, apart from the public IPFS DHT) and /ipfs/kad/1.0.0 when
// configured to. The environment variable GO_PEER_DHT_PROTOCOL picks ours:
// unset or /agentp2p/kad/1.0.0 is ProtocolPrefix("/agentp2p") as is;
// /ipfs/kad/1.0.0 pins the stream protocol back with V1ProtocolOverride.
// We always keep the private prefix: go-libp2p-kad-dht treats the /ipfs
// prefix as "the public Amino DHT" and then refuses any validator set other
// than exactly {pk, ipns} (internal/config.Validate), and we need our own
// namespaces. The default pk and ipns validators are still installed
// because we never replace the Validator.

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"
	mh "github.com/multiformats/go-multihash"
)

const (
	// privatePrefix opts out of the Amino-network config checks; on its own
	// it makes the protocol /agentp2p/kad/1.0.0, agentp2p's default.
	privatePrefix protocol.ID = "/agentp2p"
	// agentp2pProtocol and ipfsProtocol are the two DHT protocols agentp2p speaks.
	agentp2pProtocol protocol.ID = "/agentp2p/kad/1.0.0"
	ipfsProtocol     protocol.ID = "/ipfs/kad/1.0.0"
	// maxValueSize mirrors our Python validator's limit.
	maxValueSize = 64 * 1024
)

// kadProtocol is the DHT protocol this peer serves (GO_PEER_DHT_PROTOCOL).
func kadProtocol() (protocol.ID, error) {
	switch p := protocol.ID(os.Getenv("GO_PEER_DHT_PROTOCOL")); p {
	case "", agentp2pProtocol:
		return agentp2pProtocol, nil
	case ipfsProtocol:
		return ipfsProtocol, nil
	default:
		return "", fmt.Errorf("GO_PEER_DHT_PROTOCOL=%q: want %s or %s", p, agentp2pProtocol, ipfsProtocol)
	}
}

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
	proto, err := kadProtocol()
	if err != nil {
		return nil, err
	}
	opts := []dht.Option{
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(privatePrefix),
		dht.NamespacedValidator("agentp2p", permissiveValidator{}),
		// TODO: "agentrec" will hold signed agent records; verify the
		// envelope signature here once the Python side defines it.
		dht.NamespacedValidator("agentrec", permissiveValidator{}),
	}
	if proto != agentp2pProtocol {
		opts = append(opts, dht.V1ProtocolOverride(proto))
	}
	kad, err := dht.New(h, opts...)
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
