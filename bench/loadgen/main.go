// Command loadgen is the serving benchmark's native load generator: the contract of bench/load.py (arguments,
// "__SEQ__", the key from KFHIR_BENCH_TOKEN, Prefer: return=minimal, the expected status, one keep-alive
// connection per client, the JSON it prints) without Python's GIL, so that it takes less of the 2 cores it shares
// with the server it measures and its latencies hold no wait for an interpreter lock.
//
//	loadgen URL BODY.json SECONDS CLIENTS [CONTENT_TYPE]   POST BODY to URL, expect 201
//	loadgen - URLS.txt SECONDS CLIENTS                      GET the URLs in turn, expect 200
//	loadgen -rate R [-drain S] URL|- BODY SECONDS CONNECTIONS [CONTENT_TYPE]   the same, open loop (open.go)
//
// Closed loop (no -rate): each client is a goroutine with its own http.Transport limited to one connection, so N
// clients are N connections and at most N requests in flight, as N threads of load.py are; a client sends its next
// request when its last is answered. Open loop (-rate, open.go; load.py has no such mode): requests at R a second
// on a fixed schedule, latency from each request's intended send time.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// result is load.py's JSON, key for key and in its order.
type result struct {
	Count         int            `json:"count"`
	Errors        int            `json:"errors"`
	Seconds       float64        `json:"seconds"`
	PerSecond     float64        `json:"per_second"`
	CPUSeconds    float64        `json:"cpu_s"`
	P50ms         *float64       `json:"p50_ms"`
	P99ms         *float64       `json:"p99_ms"`
	ErrorStatuses map[string]int `json:"error_statuses"`
}

type client struct {
	latencies []float64 // ms, every request
	errors    int
	statuses  map[string]int // what the errors were
}

// quantile interpolates linearly between the order statistics, as bench/stats.quantile (numpy's default) does.
func quantile(sorted []float64, q float64) *float64 {
	if len(sorted) == 0 {
		return nil
	}
	pos := q * float64(len(sorted)-1)
	low := int(pos)
	high := low + 1
	if high > len(sorted)-1 {
		high = len(sorted) - 1
	}
	v := sorted[low] + (sorted[high]-sorted[low])*(pos-float64(low))
	return &v
}

// failure names a transport error as requests names its exceptions, so that both generators' error_statuses read alike.
func failure(err error) string {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "ReadTimeout"
	}
	return "ConnectionError"
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	seconds := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return seconds(usage.Utime) + seconds(usage.Stime)
}

// workload is what every request of a run is made from: the arguments, the body, the headers.
type workload struct {
	url     string
	urls    []string // GET these in turn when the URL argument is "-"
	body    string
	header  http.Header
	pid     int
	seconds float64
	clients int // closed loop: clients; open loop: the most requests in flight (connections)
}

func parse(args []string) (*workload, error) {
	if len(args) < 4 {
		return nil, errors.New("usage: loadgen [-rate R [-drain S]] URL|- BODY SECONDS CLIENTS [CONTENT_TYPE]")
	}
	w := &workload{url: args[0], pid: os.Getpid()}
	var err error
	if w.seconds, err = strconv.ParseFloat(args[2], 64); err != nil {
		return nil, fmt.Errorf("SECONDS: %w", err)
	}
	if w.clients, err = strconv.Atoi(args[3]); err != nil || w.clients < 1 {
		return nil, fmt.Errorf("CLIENTS: %q", args[3])
	}
	contentType := "application/fhir+json"
	if len(args) > 4 {
		contentType = args[4]
	}
	raw, err := os.ReadFile(args[1])
	if err != nil {
		return nil, err
	}
	w.body = string(raw)
	if w.url == "-" {
		w.urls = strings.Fields(w.body)
		if len(w.urls) == 0 {
			return nil, errors.New("no URLs in " + args[1])
		}
	}
	// The headers load.py sends (requests' defaults said outright), so that a server negotiates the same answer for
	// both; the answer is discarded, so Go's transparent gunzip (which an explicit Accept-Encoding turns off) is moot.
	w.header = http.Header{"Content-Type": {contentType}, "Prefer": {"return=minimal"}, "Accept": {"*/*"},
		"Accept-Encoding": {"gzip, deflate"}}
	if token := os.Getenv("KFHIR_BENCH_TOKEN"); token != "" { // the service's API key, given by environment, not argv
		w.header.Set("Authorization", "Bearer "+token)
	}
	return w, nil
}

// request builds request number n: the URL at `turn` of the list (GET, expect 200), or the body with __SEQ__
// replaced by seq (POST, expect 201).
func (w *workload) request(ctx context.Context, turn int, seq string) (*http.Request, int, error) {
	var request *http.Request
	var err error
	want := http.StatusCreated
	if w.urls != nil {
		request, err = http.NewRequestWithContext(ctx, http.MethodGet, w.urls[turn%len(w.urls)], nil)
		want = http.StatusOK
	} else {
		data := strings.ReplaceAll(w.body, "__SEQ__", seq)
		request, err = http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader([]byte(data)))
	}
	if err != nil {
		return nil, 0, err
	}
	request.Header = w.header.Clone()
	return request, want, nil
}

// exchange sends the request and reads the whole answer, as requests does (so the connection is kept for the next
// request); it returns "" for the expected status, else what went wrong (a status, or a transport failure's name),
// and the transport's error, if any, so that a caller can tell a deadline of its own from the server's failure.
func exchange(session *http.Client, request *http.Request, want int) (string, error) {
	answer, err := session.Do(request)
	if err != nil {
		return failure(err), err
	}
	_, err = io.Copy(io.Discard, answer.Body)
	answer.Body.Close()
	if err != nil {
		return failure(err), err
	}
	if answer.StatusCode != want {
		return strconv.Itoa(answer.StatusCode), nil
	}
	return "", nil
}

func closedLoop(w *workload) *result {
	per := make([]client, w.clients)
	stop := time.Now().Add(time.Duration(w.seconds * float64(time.Second)))
	var wg sync.WaitGroup
	started := time.Now()
	for i := range per {
		wg.Add(1)
		go func(i int, c *client) {
			defer wg.Done()
			// No proxy (the server is on loopback) and one connection, kept alive between requests.
			transport := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, MaxIdleConns: 1,
				DialContext: (&net.Dialer{Timeout: 60 * time.Second, KeepAlive: 30 * time.Second}).DialContext}
			defer transport.CloseIdleConnections()
			session := &http.Client{Transport: transport, Timeout: 60 * time.Second}
			c.statuses = map[string]int{}
			c.latencies = make([]float64, 0, 4096)
			for sent := 0; time.Now().Before(stop); sent++ {
				// unique across runs: the pid, the client and its count
				request, want, err := w.request(context.Background(), i+sent*w.clients,
					fmt.Sprintf("%d-%d-%d", w.pid, i, sent))
				if err != nil {
					c.errors++
					c.statuses["InvalidURL"]++
					continue
				}
				t0 := time.Now()
				what, _ := exchange(session, request, want)
				c.latencies = append(c.latencies, float64(time.Since(t0))/float64(time.Millisecond))
				if what != "" {
					c.errors++
					c.statuses[what]++
				}
			}
		}(i, &per[i])
	}
	wg.Wait()
	elapsed := time.Since(started).Seconds()
	out := &result{ErrorStatuses: map[string]int{}}
	var flat []float64
	for _, c := range per {
		flat = append(flat, c.latencies...)
		out.Errors += c.errors
		for k, v := range c.statuses {
			out.ErrorStatuses[k] += v
		}
	}
	sort.Float64s(flat)
	out.Count, out.Seconds = len(flat), elapsed
	out.PerSecond = float64(len(flat)-out.Errors) / elapsed
	out.P50ms, out.P99ms = quantile(flat, 0.5), quantile(flat, 0.99)
	out.CPUSeconds = cpuSeconds()
	return out
}

// run parses the flags and arguments and runs the closed loop, or the open loop when -rate is given.
func run(args []string) (any, error) {
	flags := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	rate := flags.Float64("rate", 0, "open loop: requests a second, on a fixed schedule")
	drain := flags.Float64("drain", 10, "open loop: seconds after the schedule's end to wait for answers")
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	w, err := parse(flags.Args())
	if err != nil {
		return nil, err
	}
	given := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["rate"] && !(*rate > 0 && !math.IsInf(*rate, 0)) { // NaN too: an open loop needs a positive rate
		return nil, fmt.Errorf("-rate %v: want requests a second, more than 0", *rate)
	}
	if given["drain"] && !(*drain >= 0 && !math.IsInf(*drain, 0)) {
		return nil, fmt.Errorf("-drain %v: want seconds, 0 or more", *drain)
	}
	if given["rate"] {
		return openLoop(w, *rate, time.Duration(*drain*float64(time.Second))), nil
	}
	if given["drain"] {
		return nil, errors.New("-drain without -rate: the closed loop has no drain")
	}
	return closedLoop(w), nil
}

func main() {
	out, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
