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
//
// A request never sent, or never answered, has no latency, but it is not left out: leaving it out would drop
// exactly the requests a server fell furthest behind on. Each is counted as censored, at a lower bound of its
// latency, in every percentile, the maximum and the fifths; a figure that a censored value reaches is itself only
// a lower bound, and lower_bounds names it. One not answered waited at least until the drain's end. One not sent
// could not have left before a connection came free: the j-th unsent request in schedule order not before the j-th
// answer (or give-up) after the dispatcher gave up, or the last of them when there were fewer, since every request
// earlier in the schedule would have taken a free connection first; its bound is that time minus its intended
// time (at least the schedule's end minus it). Bounding it by the schedule's end alone would show the last fifth's
// median falling, all its requests unsent and "late" by less than the schedule's last second, exactly when the
// queue grew.
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
// p99_ms, error_statuses) with the same meanings over the requests sent, and what an open loop adds. The latency
// figures are over every scheduled request, the censored ones at their lower bounds.
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
	Censored            int            `json:"censored"`   // not sent, or not answered within the drain
	Seconds             float64        `json:"seconds"`    // from the first intended send to the last answer received
	PerSecond           float64        `json:"per_second"` // achieved: expected answers over Seconds
	GaveUpSeconds       *float64       `json:"gave_up_s"`  // from the first intended send to the last give-up, if any
	CPUSeconds          float64        `json:"cpu_s"`
	P50ms               *float64       `json:"p50_ms"` // latencies from the intended send time, censored ones included
	P99ms               *float64       `json:"p99_ms"`
	MaxMs               *float64       `json:"max_ms"`
	P50FirstMs          *float64       `json:"p50_first_ms"`    // the first fifth of the schedule (by intended time)
	P50LastMs           *float64       `json:"p50_last_ms"`     // the last fifth: well above the first when the queue grows
	LowerBounds         []string       `json:"lower_bounds"`    // the latency keys above that a censored value reaches
	SendLagP99ms        *float64       `json:"send_lag_p99_ms"` // intended to actual send: the generator's own delay
	SendLagMaxMs        *float64       `json:"send_lag_max_ms"`
	ErrorStatuses       map[string]int `json:"error_statuses"`
}

type sample struct {
	sent    bool
	latency float64 // ms from the intended send time to the whole answer read (or to the give-up: censored)
	lag     float64 // ms from the intended send time to the request's start
	what    string  // "" when the answer was the expected one
	done    time.Time
}

// timing is one request's latency for the percentiles, and whether it is only a lower bound.
type timing struct {
	ms       float64
	censored bool
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// schedule is the time request k is meant to be sent.
func schedule(start time.Time, rate float64, k int) time.Time {
	return start.Add(time.Duration(float64(k) * float64(time.Second) / rate))
}

// quantileOf sorts the timings and returns quantile q of them, and whether it is only a lower bound: raising a
// censored value to its true latency can move an order statistic only if that value sits at or below it.
func quantileOf(timings []timing, q float64) (*float64, bool) {
	if len(timings) == 0 {
		return nil, false
	}
	sort.SliceStable(timings, func(i, j int) bool { return timings[i].ms < timings[j].ms })
	values := make([]float64, len(timings))
	for i, t := range timings {
		values[i] = t.ms
	}
	v := quantile(values, q)
	high := min(int(q*float64(len(timings)-1))+1, len(timings)-1)
	for _, t := range timings[:high+1] {
		if t.censored {
			return v, true
		}
	}
	return v, false
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
	out := &openResult{Mode: "open", Rate: rate, Scheduled: n, Connections: w.clients, ErrorStatuses: map[string]int{},
		LowerBounds: []string{}}
	var gaveUp time.Time // when the dispatcher stopped waiting for a connection
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
				gaveUp = time.Now()
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
			} else if s.what, err = exchange(session, request, want); cutOff(ctx, err) {
				s.what = "NotAnswered"
			}
			s.done = time.Now()
			s.latency = millis(s.done.Sub(intended))
		}(k, intended)
	}
	wg.Wait()
	frees := freedAfter(samples, gaveUp)
	var all, first, last []timing
	var lags []float64
	var end, lastGiveUp time.Time
	for k := range samples {
		s := &samples[k]
		t := timing{ms: s.latency, censored: !s.sent || s.what == "NotAnswered"}
		if !s.sent { // never sent: at least from its intended time to the connection it would have waited for
			j := k - (n - out.NotSent) // the j-th unsent, in schedule order
			t.ms = millis(frees[min(j, len(frees)-1)].Sub(schedule(start, rate, k)))
		}
		all = append(all, t)
		if k < n/5 {
			first = append(first, t)
		} else if k >= n-n/5 {
			last = append(last, t)
		}
		if t.censored {
			out.Censored++
			lastGiveUp = later(lastGiveUp, s.done, gaveUp)
		}
		if !s.sent {
			continue
		}
		out.Count++
		lags = append(lags, s.lag)
		if s.what != "NotAnswered" { // an answer (expected or not) or a failure, at a time of its own
			end = later(end, s.done)
		}
		if s.what != "" {
			out.Errors++
			out.ErrorStatuses[s.what]++
		}
	}
	sort.Float64s(lags)
	if !end.IsZero() {
		out.Seconds = end.Sub(start).Seconds()
		out.PerSecond = float64(out.Count-out.Errors) / out.Seconds
	}
	if !lastGiveUp.IsZero() {
		gave := lastGiveUp.Sub(start).Seconds()
		out.GaveUpSeconds = &gave
	}
	for _, figure := range []struct {
		key      string
		into     **float64
		timings  []timing
		quantile float64
	}{{"p50_ms", &out.P50ms, all, 0.5}, {"p99_ms", &out.P99ms, all, 0.99}, {"max_ms", &out.MaxMs, all, 1},
		{"p50_first_ms", &out.P50FirstMs, first, 0.5}, {"p50_last_ms", &out.P50LastMs, last, 0.5}} {
		value, bound := quantileOf(figure.timings, figure.quantile)
		*figure.into = value
		if bound {
			out.LowerBounds = append(out.LowerBounds, figure.key)
		}
	}
	out.SendLagP99ms = quantile(lags, 0.99)
	if len(lags) > 0 {
		out.SendLagMaxMs = &lags[len(lags)-1]
	}
	out.Dialed = dialed.Load()
	out.CPUSeconds = cpuSeconds()
	return out
}

// cutOff says whether an exchange failed because the run's deadline (the drain's end) cut it off, the answer still
// awaited: only then is it "NotAnswered". An answer that came, or a failure of the server's, keeps its own name
// even when it is reported after the deadline passed.
func cutOff(ctx context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded)
}

// freedAfter is when connections came free after the dispatcher gave up (each answer or give-up of a request then
// in flight), in order; the give-up itself when none did. Unused when every request was sent.
func freedAfter(samples []sample, gaveUp time.Time) []time.Time {
	frees := []time.Time{gaveUp}
	for _, s := range samples {
		if s.sent && s.done.After(gaveUp) {
			frees = append(frees, s.done)
		}
	}
	sort.Slice(frees, func(i, j int) bool { return frees[i].Before(frees[j]) })
	if len(frees) > 1 {
		return frees[1:]
	}
	return frees
}

// later is the latest of the times, the zero time left out.
func later(times ...time.Time) time.Time {
	var latest time.Time
	for _, t := range times {
		if t.After(latest) {
			latest = t
		}
	}
	return latest
}
