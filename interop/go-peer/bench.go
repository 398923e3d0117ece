package main

// Throughput commands for benchmarks/pubsub_compare.py, which runs the same
// workload on our router, py-libp2p's and this one. Per-message JSON events
// (the "subscribe" command) would cost more than go-libp2p-pubsub itself,
// so a bench subscription only counts, in memory, and answers "benchstats".
//
// Payload layout, shared with benchmarks/pubsub_bench.py (struct "!BIQ"):
// kind (1 byte: 0 warm-up, 1 measured), seq (uint32, big-endian), send time
// (uint64 ns of CLOCK_MONOTONIC, big-endian), then zero padding. Linux's
// CLOCK_MONOTONIC is one clock for every process on the machine, and it is
// what Python's time.monotonic_ns() reads, so latencies are comparable
// across processes and languages.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	benchHeader = 13 // 1 + 4 + 8 bytes
	benchWarm   = 0
	benchData   = 1
	// benchMaxCount bounds one benchpub and the latencies one recorder
	// keeps, so a typo cannot make the peer allocate without limit.
	benchMaxCount = 10_000_000
	benchMaxSize  = 1 << 20
)

func monoNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// benchRecorder is what one bench subscription received.
type benchRecorder struct {
	mu        sync.Mutex
	counts    map[uint32]uint32 // seq -> copies delivered (measured messages)
	latencies []int64           // ns, first copy of each measured message
	warm      int               // warm-up messages delivered
	lastNs    int64             // receive time of the latest first copy
	other     int               // messages without our header
}

func (r *benchRecorder) record(data []byte) {
	now := monoNs()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(data) < benchHeader {
		r.other++
		return
	}
	kind := data[0]
	seq := binary.BigEndian.Uint32(data[1:5])
	sent := int64(binary.BigEndian.Uint64(data[5:13]))
	if kind == benchWarm {
		r.warm++
		return
	}
	c := r.counts[seq]
	r.counts[seq] = c + 1
	if c == 0 && len(r.latencies) < benchMaxCount {
		r.latencies = append(r.latencies, now-sent)
		r.lastNs = now
	}
}

type benchState struct {
	mu   sync.Mutex
	recs map[string]*benchRecorder // topic -> recorder
}

func (b *benchState) recorder(topic string) *benchRecorder {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recs[topic]
}

// cmdBenchSub subscribes to a topic and counts what arrives (no events).
func (n *node) cmdBenchSub(ctx context.Context, args []string) (reply, error) {
	topic := args[0]
	n.bench.mu.Lock()
	if n.bench.recs == nil {
		n.bench.recs = map[string]*benchRecorder{}
	}
	if _, ok := n.bench.recs[topic]; ok {
		n.bench.mu.Unlock()
		return reply{}, nil
	}
	sub, err := n.topics.subscribe(topic)
	if err != nil {
		n.bench.mu.Unlock()
		return nil, err
	}
	if sub == nil {
		n.bench.mu.Unlock()
		return nil, errors.New("already subscribed with 'subscribe'; bench subscriptions are separate")
	}
	rec := &benchRecorder{counts: map[uint32]uint32{}}
	n.bench.recs[topic] = rec
	n.bench.mu.Unlock()
	self := n.host.ID()
	n.subs.Go(func() {
		defer sub.Cancel()
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if msg.Local || msg.GetFrom() == self {
				continue
			}
			rec.record(msg.GetData())
		}
	})
	return reply{}, nil
}

// cmdBenchPub publishes count messages of size bytes with seqs start..,
// as fast as Publish returns (rate 0) or at rate messages per second, and
// replies when done. Publish errors are counted, not fatal.
func (n *node) cmdBenchPub(ctx context.Context, args []string) (reply, error) {
	topic := args[0]
	nums := make([]float64, 5)
	for i, s := range args[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("benchpub <topic> <kind> <start> <count> <size> <rate>: bad number %q", s)
		}
		nums[i] = v
	}
	kind, start, count, size, rate := byte(nums[0]), uint32(nums[1]), int(nums[2]), int(nums[3]), nums[4]
	if count > benchMaxCount || size > benchMaxSize {
		return nil, fmt.Errorf("count <= %d and size <= %d", benchMaxCount, benchMaxSize)
	}
	if size < benchHeader {
		size = benchHeader
	}
	tp, err := n.topics.join(topic)
	if err != nil {
		return nil, err
	}
	var errs int
	var firstErr string
	t0 := time.Now()
	t0ns := monoNs()
	for i := 0; i < count; i++ {
		if rate > 0 {
			if d := time.Until(t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		data := make([]byte, size)
		data[0] = kind
		binary.BigEndian.PutUint32(data[1:5], start+uint32(i))
		binary.BigEndian.PutUint64(data[5:13], uint64(monoNs()))
		if err := tp.Publish(ctx, data); err != nil {
			errs++
			if firstErr == "" {
				firstErr = err.Error()
			}
			if ctx.Err() != nil {
				break
			}
		}
	}
	return reply{
		"published": count - errs, "errors": errs, "first_error": firstErr,
		"t0_ns": t0ns, "elapsed_s": time.Since(t0).Seconds(),
	}, nil
}

// cmdBenchCount is the cheap progress poll: unique measured messages and
// warm-up messages delivered so far.
func (n *node) cmdBenchCount(_ context.Context, args []string) (reply, error) {
	rec := n.bench.recorder(args[0])
	if rec == nil {
		return reply{"unique": 0, "warm": 0}, nil
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return reply{"unique": len(rec.counts), "warm": rec.warm}, nil
}

// cmdBenchStats reports a bench subscription's counts and latencies (us),
// and the losses go-libp2p-pubsub reported to our tracer.
func (n *node) cmdBenchStats(_ context.Context, args []string) (reply, error) {
	drops := n.mesh.dropCounts()
	rec := n.bench.recorder(args[0])
	if rec == nil {
		return reply{"unique": 0, "duplicates": 0, "warm": 0, "last_ns": 0, "latencies_us": []int64{}, "drops": drops}, nil
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	dups := 0
	for _, c := range rec.counts {
		dups += int(c) - 1
	}
	lat := make([]int64, len(rec.latencies))
	for i, ns := range rec.latencies {
		lat[i] = ns / 1000
	}
	return reply{
		"unique": len(rec.counts), "duplicates": dups, "warm": rec.warm, "other": rec.other,
		"last_ns": rec.lastNs, "latencies_us": lat, "drops": drops,
	}, nil
}

// dropCounts: messages go-libp2p-pubsub lost and told its tracer about.
func (t *meshTracer) dropCounts() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return map[string]int{
		"outbound_rpcs_dropped":     t.droppedRPCs,
		"outbound_msgs_dropped":     t.droppedMsgs,
		"undeliverable_slow_reader": t.undeliverable,
		"rejected":                  t.rejected,
	}
}
