package detect

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus metric names; the OpenTelemetry instruments in otel.go
// translate to the same names.
const (
	promAttempts        = "authprobe_auth_attempts_total"
	promFailedUsernames = "authprobe_auth_failed_usernames"
	promSourcesTracked  = "authprobe_detect_sources_tracked"
	promSourcesEvicted  = "authprobe_detect_sources_evicted_total"
	promAmbiguous       = "authprobe_auth_ambiguous_total"
	promDenials         = "authprobe_auth_denials_total"
)

// promDescs builds the Prometheus descriptions, once per Detector.
func promDescs() (attempts, failed, tracked, evicted, ambiguous, denials *prometheus.Desc) {
	attempts = prometheus.NewDesc(promAttempts,
		"Auth attempts seen by the agent, by route (span name), result and failure reason.",
		[]string{"route", "result", "failure_reason"}, nil)
	failed = prometheus.NewDesc(promFailedUsernames,
		"Estimated distinct usernames that failed to authenticate from this client subnet over the detection window (top sources only).",
		[]string{"client_subnet"}, nil)
	tracked = prometheus.NewDesc(promSourcesTracked,
		"Client subnets with failures in the detection window that the detector tracks.", nil, nil)
	evicted = prometheus.NewDesc(promSourcesEvicted,
		"Client subnets dropped because the tracked set was full (lowest estimate first).", nil, nil)
	ambiguous = prometheus.NewDesc(promAmbiguous,
		"Auth attempts whose request servers read differently (auth.request.ambiguous), by route (span name) and kind; a request counts once per kind.",
		[]string{"route", "kind"}, nil)
	denials = prometheus.NewDesc(promDenials,
		"Auth attempts denied, by route (span name) and the layer that said no (auth.decision.layer: gateway, service, database, upstream).",
		[]string{"route", "layer"}, nil)
	return attempts, failed, tracked, evicted, ambiguous, denials
}

// Describe implements prometheus.Collector.
func (d *Detector) Describe(ch chan<- *prometheus.Desc) {
	ch <- d.attemptsDesc
	ch <- d.failedDesc
	ch <- d.trackedDesc
	ch <- d.evictedDesc
	ch <- d.ambiguousDesc
	ch <- d.denialsDesc
}

// Collect implements prometheus.Collector.
func (d *Detector) Collect(ch chan<- prometheus.Metric) {
	a, f, t, e := d.attemptsDesc, d.failedDesc, d.trackedDesc, d.evictedDesc
	snap := d.snapshot()
	for _, c := range snap.attempts {
		ch <- prometheus.MustNewConstMetric(a, prometheus.CounterValue, float64(c.n), c.route, c.result, c.reason)
	}
	for _, s := range snap.top {
		ch <- prometheus.MustNewConstMetric(f, prometheus.GaugeValue, float64(s.distinct), s.subnet)
	}
	ch <- prometheus.MustNewConstMetric(t, prometheus.GaugeValue, float64(snap.tracked))
	ch <- prometheus.MustNewConstMetric(e, prometheus.CounterValue, float64(snap.evicted))
	for _, c := range snap.denials {
		ch <- prometheus.MustNewConstMetric(d.denialsDesc, prometheus.CounterValue, float64(c.n), c.route, c.kind)
	}
	for _, c := range snap.ambiguous {
		ch <- prometheus.MustNewConstMetric(d.ambiguousDesc, prometheus.CounterValue, float64(c.n), c.route, c.kind)
	}
}
