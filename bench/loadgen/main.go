// Command loadgen is the serving benchmark's native load generator: the contract of bench/load.py (arguments,
// "__SEQ__", the key from KFHIR_BENCH_TOKEN, Prefer: return=minimal, the expected status, one keep-alive
// connection per client, the JSON it prints) without Python's GIL, so that it takes less of the 2 cores it shares
// with the server it measures and its latencies hold no wait for an interpreter lock.
//
//	loadgen URL BODY.json SECONDS CLIENTS [CONTENT_TYPE]   POST BODY to URL, expect 201
//	loadgen - URLS.txt SECONDS CLIENTS                      GET the URLs in turn, expect 200
//
// Each client is a goroutine with its own http.Transport limited to one connection, so N clients are N
// connections and at most N requests in flight, as N threads of load.py are.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

func run(args []string) (*result, error) {
	if len(args) < 4 {
		return nil, errors.New("usage: loadgen URL|- BODY SECONDS CLIENTS [CONTENT_TYPE]")
	}
	url, bodyPath := args[0], args[1]
	seconds, err := strconv.ParseFloat(args[2], 64)
	if err != nil {
		return nil, fmt.Errorf("SECONDS: %w", err)
	}
	clients, err := strconv.Atoi(args[3])
	if err != nil || clients < 1 {
		return nil, fmt.Errorf("CLIENTS: %q", args[3])
	}
	contentType := "application/fhir+json"
	if len(args) > 4 {
		contentType = args[4]
	}
	raw, err := os.ReadFile(bodyPath)
	if err != nil {
		return nil, err
	}
	body := string(raw)
	var urls []string
	if url == "-" {
		urls = strings.Fields(body)
		if len(urls) == 0 {
			return nil, errors.New("no URLs in " + bodyPath)
		}
	}
	// The headers load.py sends (requests' defaults said outright), so that a server negotiates the same answer for
	// both; the answer is discarded, so Go's transparent gunzip (which an explicit Accept-Encoding turns off) is moot.
	header := http.Header{"Content-Type": {contentType}, "Prefer": {"return=minimal"}, "Accept": {"*/*"},
		"Accept-Encoding": {"gzip, deflate"}}
	if token := os.Getenv("KFHIR_BENCH_TOKEN"); token != "" { // the service's API key, given by environment, not argv
		header.Set("Authorization", "Bearer "+token)
	}
	pid := os.Getpid()
	per := make([]client, clients)
	stop := time.Now().Add(time.Duration(seconds * float64(time.Second)))
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
				var request *http.Request
				var err error // this client's own: run's err is shared by every goroutine
				want := http.StatusCreated
				if urls != nil {
					request, err = http.NewRequest(http.MethodGet, urls[(i+sent*clients)%len(urls)], nil)
					want = http.StatusOK
				} else { // unique across runs: the pid, the client and its count
					data := strings.ReplaceAll(body, "__SEQ__", fmt.Sprintf("%d-%d-%d", pid, i, sent))
					request, err = http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(data)))
				}
				if err != nil {
					c.errors++
					c.statuses["InvalidURL"]++
					continue
				}
				request.Header = header.Clone()
				t0 := time.Now()
				answer, err := session.Do(request)
				what := ""
				if err != nil {
					what = failure(err)
				} else {
					// The whole answer is read, as requests does, and the connection kept for the next request.
					_, err = io.Copy(io.Discard, answer.Body)
					answer.Body.Close()
					if err != nil {
						what = failure(err)
					} else if answer.StatusCode != want {
						what = strconv.Itoa(answer.StatusCode)
					}
				}
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
	return out, nil
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
