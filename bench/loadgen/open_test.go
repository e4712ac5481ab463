package main

// The open loop against servers of the test's own (tests/bench/test_loadgen.py runs `go test` here): the schedule is
// kept, and a server that cannot keep up shows it in latencies counted from the intended send time, in requests not
// sent, and in an achieved rate below the one asked for. The machine these run on is shared and often loaded, so
// the bounds are wide, but each fails for a generator that sends in bursts or times from the actual send.

import (
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func testWorkload(url string, seconds float64, connections int) *workload {
	return &workload{url: url + "/MedicationAdministration", body: `{"id": "x-__SEQ__"}`, pid: 1, seconds: seconds,
		clients: connections, header: http.Header{"Content-Type": {"application/fhir+json"}}}
}

func TestTheScheduleIsKept(t *testing.T) {
	var mu sync.Mutex
	var arrivals []time.Time
	var ids []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body strings.Builder
		buf := make([]byte, 256)
		n, _ := r.Body.Read(buf)
		body.Write(buf[:n])
		mu.Lock()
		arrivals, ids = append(arrivals, time.Now()), append(ids, body.String())
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer server.Close()

	const rate, seconds = 200.0, 0.5
	out := openLoop(testWorkload(server.URL, seconds, 16), rate, 5*time.Second)

	if out.Scheduled != 100 || out.Sent != 100 || out.NotSent != 0 || out.Count != 100 || out.Errors != 0 {
		t.Fatalf("scheduled %d, sent %d, not sent %d, count %d, errors %d: want 100 sent and answered",
			out.Scheduled, out.Sent, out.NotSent, out.Count, out.Errors)
	}
	if len(arrivals) != 100 {
		t.Fatalf("the server saw %d requests, want 100", len(arrivals))
	}
	sort.Slice(arrivals, func(i, j int) bool { return arrivals[i].Before(arrivals[j]) })
	// 100 requests 5 ms apart span 495 ms: a generator sending in bursts, or as fast as it can, spans far less.
	if span := arrivals[99].Sub(arrivals[0]); span < 400*time.Millisecond || span > 1500*time.Millisecond {
		t.Errorf("the requests arrived over %v, want about 495 ms", span)
	}
	gaps := make([]time.Duration, 0, 99)
	for i := 1; i < len(arrivals); i++ {
		gaps = append(gaps, arrivals[i].Sub(arrivals[i-1]))
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	if median := gaps[len(gaps)/2]; median < 2500*time.Microsecond || median > 7500*time.Microsecond {
		t.Errorf("median gap between arrivals %v, want about 5 ms", median)
	}
	if out.PerSecond < 100 || out.PerSecond > 205 {
		t.Errorf("achieved %.0f/s of 200/s from a server that answers at once", out.PerSecond)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(seen) != 100 || !seen[`{"id": "x-1-o-0"}`] || !seen[`{"id": "x-1-o-99"}`] {
		t.Errorf("__SEQ__ should be <pid>-o-<k>, new in every request: %d distinct, e.g. %q", len(seen), ids[0])
	}
}

// slowServer answers one request at a time, each after `each`: its capacity is 1/each a second, whatever the
// number of connections.
func slowServer(each time.Duration, status int) *httptest.Server {
	var turn sync.Mutex
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		turn.Lock()
		time.Sleep(each)
		turn.Unlock()
		w.WriteHeader(status)
	}))
}

func TestLatencyCountsFromTheIntendedSendTime(t *testing.T) {
	// 100 requests a second against a server that does 50: with one connection the generator cannot send request k
	// at its time, k × 10 ms, but only when request k-1 is answered, about k × 20 ms. Timed from the actual send,
	// every request would take 20 ms (coordinated omission); from the intended time the wait is counted too.
	server := slowServer(20*time.Millisecond, http.StatusCreated)
	defer server.Close()

	out := openLoop(testWorkload(server.URL, 0.6, 1), 100, 5*time.Second)

	if out.Scheduled != 60 || out.Sent+out.NotSent != 60 {
		t.Fatalf("scheduled %d, sent %d, not sent %d", out.Scheduled, out.Sent, out.NotSent)
	}
	if out.NotSent < 15 || out.WaitedForConnection < 15 {
		t.Errorf("not sent %d, waited for a connection %d: a server at half the rate leaves about 30 unsent",
			out.NotSent, out.WaitedForConnection)
	}
	if out.PerSecond > 60 {
		t.Errorf("achieved %.0f/s from a server that answers 50/s", out.PerSecond)
	}
	// The last request sent (about the 30th, meant for ~300 ms) is answered at ~600 ms: ~300 ms late.
	if *out.MaxMs < 200 || *out.P99ms < 200 {
		t.Errorf("max %.0f ms, p99 %.0f ms: want the queue counted (about 300 ms)", *out.MaxMs, *out.P99ms)
	}
	if *out.SendLagMaxMs < 150 {
		t.Errorf("the latest send was %.0f ms after its time, want about 300 ms", *out.SendLagMaxMs)
	}
	if *out.P50FirstMs*2 > *out.P99ms {
		t.Errorf("p50 of the first fifth %.0f ms against p99 %.0f ms: the latency should grow", *out.P50FirstMs,
			*out.P99ms)
	}
}

func TestAServerThatKeepsUpShowsNoQueue(t *testing.T) {
	// The same server at a rate it can take (25 a second, one every 40 ms, each taking 20 ms): nothing waits.
	server := slowServer(20*time.Millisecond, http.StatusCreated)
	defer server.Close()

	out := openLoop(testWorkload(server.URL, 0.8, 4), 25, 5*time.Second)

	if out.Sent != 20 || out.NotSent != 0 || out.Errors != 0 {
		t.Fatalf("sent %d, not sent %d, errors %d", out.Sent, out.NotSent, out.Errors)
	}
	if *out.P50ms < 20 || *out.P50ms > 250 {
		t.Errorf("p50 %.0f ms, want about 20 ms", *out.P50ms)
	}
}

func TestAnswersStillAwaitedAfterTheDrainAreCountedAndRefusalsAreErrors(t *testing.T) {
	server := slowServer(150*time.Millisecond, http.StatusUnprocessableEntity)
	defer server.Close()

	// 10 requests in 0.1 s, at most 10 in flight, to a server taking 150 ms each in turn; 0.4 s of drain: about 3
	// are answered (422) before the drain ends, the rest not.
	out := openLoop(testWorkload(server.URL, 0.1, 10), 100, 400*time.Millisecond)

	if out.Sent != 10 || out.Errors != 10 || out.PerSecond != 0 {
		t.Fatalf("sent %d, errors %d, achieved %.1f/s: every answer is a 422 or none", out.Sent, out.Errors,
			out.PerSecond)
	}
	if out.ErrorStatuses["NotAnswered"] < 3 || out.ErrorStatuses["422"] < 1 {
		t.Errorf("error statuses %v: want a few 422s, then the rest not answered within the drain",
			out.ErrorStatuses)
	}
	if *out.MaxMs > 3000 {
		t.Errorf("max %.0f ms: the drain should end the wait after about 500 ms", *out.MaxMs)
	}
}
