// The open loop (-rate): requests at a constant arrival rate, each timed from the moment the schedule meant to send
// it, as wrk2 does, so that a server falling behind shows it in the latencies instead of slowing the generator
// down. A closed loop (main.go) sends a client's next request only when the last is answered: a slow answer then
// delays the requests that would have met the same queue, and the queue is never measured (coordinated omission).
//
// Request k is meant to go at start + k/R. The dispatcher sleeps until then and hands it to a goroutine of its own
// on a keep-alive connection from one shared pool; at most CONNECTIONS are in flight at once. When none is free at
// its time the dispatcher waits for one (counted in waited_for_connection; the request's latency still runs from
// its intended time) until the schedule's end; the requests it could not send by then are counted as not_sent. The
// answers still awaited at the end are waited for up to -drain seconds more, then counted as "NotAnswered".
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// openResult is the open loop's JSON: the closed loop's keys (count, errors, seconds, per_second, cpu_s, p50_ms,
// p99_ms, error_statuses) with the same meanings over the requests sent, and what an open loop adds.
type openResult struct {
	Mode                string         `json:"mode"` // "open"
	Rate                float64        `json:"rate"` // asked for, requests a second
	Scheduled           int            `json:"scheduled"`
	Sent                int            `json:"sent"`
	NotSent             int            `json:"not_sent"`              // no connection free before the schedule's end
	WaitedForConnection int            `json:"waited_for_connection"` // sent late: every connection was busy
	Connections         int            `json:"connections"`           // the most requests in flight allowed
	PeakInFlight        int            `json:"peak_in_flight"`
	Dialed              int64          `json:"dialed"` // connections opened
	Count               int            `json:"count"`  // requests sent (answered or failed)
	Errors              int            `json:"errors"`
	Seconds             float64        `json:"seconds"`    // from the first intended send to the last answer
	PerSecond           float64        `json:"per_second"` // achieved: expected answers over Seconds
	CPUSeconds          float64        `json:"cpu_s"`
	P50ms               *float64       `json:"p50_ms"` // latencies from the intended send time
	P99ms               *float64       `json:"p99_ms"`
	MaxMs               *float64       `json:"max_ms"`
	P50FirstMs          *float64       `json:"p50_first_ms"`    // the first fifth of the schedule (by intended time)
	P50LastMs           *float64       `json:"p50_last_ms"`     // the last fifth: well above the first when the queue grows
	SendLagP99ms        *float64       `json:"send_lag_p99_ms"` // intended to actual send: the generator's own delay
	SendLagMaxMs        *float64       `json:"send_lag_max_ms"`
	ErrorStatuses       map[string]int `json:"error_statuses"`
}

type sample struct {
	sent    bool
	latency float64 // ms from the intended send time to the whole answer read
	lag     float64 // ms from the intended send time to the request's start
	what    string  // "" when the answer was the expected one
	done    time.Time
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// schedule is the time request k is meant to be sent.
func schedule(start time.Time, rate float64, k int) time.Time {
	return start.Add(time.Duration(float64(k) * float64(time.Second) / rate))
}

func openLoop(w *workload, rate float64, drain time.Duration) *openResult {
	n := max(int(math.Floor(w.seconds*rate+1e-9)), 1)
	var dialed atomic.Int64
	dialer := &net.Dialer{Timeout: 60 * time.Second, KeepAlive: 30 * time.Second}
	// One pool of keep-alive connections, as many kept idle as may be in flight; no proxy (loopback).
	transport := &http.Transport{MaxIdleConns: w.clients, MaxIdleConnsPerHost: w.clients,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed.Add(1)
			return dialer.DialContext(ctx, network, addr)
		}}
	defer transport.CloseIdleConnections()
	session := &http.Client{Transport: transport, Timeout: 60 * time.Second}
	samples := make([]sample, n) // each goroutine writes its own element only
	slots := make(chan struct{}, w.clients)
	start := time.Now()
	stop := schedule(start, rate, n) // the schedule's end: one interval after the last request's time
	ctx, cancel := context.WithDeadline(context.Background(), stop.Add(drain))
	defer cancel()
	out := &openResult{Mode: "open", Rate: rate, Scheduled: n, Connections: w.clients, ErrorStatuses: map[string]int{}}
	var wg sync.WaitGroup
dispatch:
	for k := 0; k < n; k++ {
		intended := schedule(start, rate, k)
		if wait := time.Until(intended); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case slots <- struct{}{}:
		default: // every connection busy: wait for one, but not past the schedule's end
			out.WaitedForConnection++
			timer := time.NewTimer(time.Until(stop))
			select {
			case slots <- struct{}{}:
				timer.Stop()
			case <-timer.C:
				out.NotSent = n - k
				break dispatch
			}
		}
		out.Sent++
		out.PeakInFlight = max(out.PeakInFlight, len(slots))
		wg.Add(1)
		go func(k int, intended time.Time) {
			defer wg.Done()
			defer func() { <-slots }()
			s := &samples[k]
			s.sent, s.lag = true, millis(time.Since(intended))
			request, want, err := w.request(ctx, k, fmt.Sprintf("%d-o-%d", w.pid, k)) // unique across runs
			if err != nil {
				s.what = "InvalidURL"
			} else if s.what = exchange(session, request, want); s.what != "" && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				s.what = "NotAnswered" // still awaited when the drain ended
			}
			s.done = time.Now()
			s.latency = millis(s.done.Sub(intended))
		}(k, intended)
	}
	wg.Wait()
	var latencies, lags, first, last []float64
	var end time.Time
	for k, s := range samples {
		if !s.sent {
			continue
		}
		latencies, lags = append(latencies, s.latency), append(lags, s.lag)
		if k < n/5 {
			first = append(first, s.latency)
		} else if k >= n-n/5 {
			last = append(last, s.latency)
		}
		if s.done.After(end) {
			end = s.done
		}
		if s.what != "" {
			out.Errors++
			out.ErrorStatuses[s.what]++
		}
	}
	for _, values := range [][]float64{latencies, lags, first, last} {
		sort.Float64s(values)
	}
	out.Count = len(latencies)
	if out.Count > 0 {
		out.Seconds = end.Sub(start).Seconds()
		out.PerSecond = float64(out.Count-out.Errors) / out.Seconds
		out.MaxMs = &latencies[len(latencies)-1]
		out.SendLagMaxMs = &lags[len(lags)-1]
	}
	out.P50ms, out.P99ms = quantile(latencies, 0.5), quantile(latencies, 0.99)
	out.P50FirstMs, out.P50LastMs = quantile(first, 0.5), quantile(last, 0.5)
	out.SendLagP99ms = quantile(lags, 0.99)
	out.Dialed = dialed.Load()
	out.CPUSeconds = cpuSeconds()
	return out
}
