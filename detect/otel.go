package detect

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// OpenTelemetry instrument names. The Prometheus translation (dots to
// underscores, _total on monotonic sums, braced units dropped) gives the
// names of prometheus.go, so one set of rules fits both paths.
const (
	otelAttempts        = "authprobe.auth.attempts"
	otelFailedUsernames = "authprobe.auth.failed_usernames"
	otelSourcesTracked  = "authprobe.detect.sources_tracked"
	otelSourcesEvicted  = "authprobe.detect.sources_evicted"
	otelAmbiguous       = "authprobe.auth.ambiguous"
	otelDenials         = "authprobe.auth.denials"
)

// RegisterOTel creates the detector's metrics on m as observable
// instruments, read from one callback at each collection.
func (d *Detector) RegisterOTel(m metric.Meter) error {
	if m == nil {
		return errors.New("register detection metrics: nil meter")
	}
	attempts, err := m.Int64ObservableCounter(otelAttempts,
		metric.WithDescription("Auth attempts seen by the agent, by route (span name), result and failure reason."),
		metric.WithUnit("{attempt}"))
	if err != nil {
		return fmt.Errorf("create %s: %w", otelAttempts, err)
	}
	failed, err := m.Int64ObservableGauge(otelFailedUsernames,
		metric.WithDescription("Estimated distinct usernames that failed to authenticate from this client subnet over the detection window (top sources only)."),
		metric.WithUnit("{username}"))
	if err != nil {
		return fmt.Errorf("create %s: %w", otelFailedUsernames, err)
	}
	tracked, err := m.Int64ObservableGauge(otelSourcesTracked,
		metric.WithDescription("Client subnets with failures in the detection window that the detector tracks."),
		metric.WithUnit("{source}"))
	if err != nil {
		return fmt.Errorf("create %s: %w", otelSourcesTracked, err)
	}
	evicted, err := m.Int64ObservableCounter(otelSourcesEvicted,
		metric.WithDescription("Client subnets dropped because the tracked set was full (lowest estimate first)."),
		metric.WithUnit("{source}"))
	if err != nil {
		return fmt.Errorf("create %s: %w", otelSourcesEvicted, err)
	}
	ambiguous, err := m.Int64ObservableCounter(otelAmbiguous,
		metric.WithDescription("Auth attempts whose request servers read differently (auth.request.ambiguous), by route (span name) and kind; a request counts once per kind."),
		metric.WithUnit("{request}"))
	if err != nil {
		return fmt.Errorf("create %s: %w", otelAmbiguous, err)
	}
	denials, err := m.Int64ObservableCounter(otelDenials,
		metric.WithDescription("Auth attempts denied, by route (span name) and the layer that said no (auth.decision.layer)."),
		metric.WithUnit("{request}"))
	if err != nil {
		return fmt.Errorf("create %s: %w", otelDenials, err)
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		snap := d.snapshot()
		for _, c := range snap.attempts {
			o.ObserveInt64(attempts, int64(c.n), metric.WithAttributeSet(attribute.NewSet(
				attribute.String("route", c.route),
				attribute.String("result", c.result),
				attribute.String("failure_reason", c.reason))))
		}
		for _, s := range snap.top {
			o.ObserveInt64(failed, s.distinct, metric.WithAttributeSet(attribute.NewSet(
				attribute.String("client_subnet", s.subnet))))
		}
		o.ObserveInt64(tracked, int64(snap.tracked))
		o.ObserveInt64(evicted, int64(snap.evicted))
		for _, c := range snap.ambiguous {
			o.ObserveInt64(ambiguous, int64(c.n), metric.WithAttributeSet(attribute.NewSet(
				attribute.String("route", c.route),
				attribute.String("kind", c.kind))))
		}
		for _, c := range snap.denials {
			o.ObserveInt64(denials, int64(c.n), metric.WithAttributeSet(attribute.NewSet(
				attribute.String("route", c.route),
				attribute.String("layer", c.kind))))
		}
		return nil
	}, attempts, failed, tracked, evicted, ambiguous, denials)
	if err != nil {
		return fmt.Errorf("register detection metrics callback: %w", err)
	}
	return nil
}

// NewOTLPMeterProvider returns a MeterProvider that pushes to an OTLP/gRPC
// endpoint (host:port; empty leaves it to OTEL_EXPORTER_OTLP_* and the
// exporter's default) every interval (zero: the SDK's default, 60s, or
// OTEL_METRIC_EXPORT_INTERVAL). Temporality is cumulative, as Prometheus
// counters are. extra options (sdkmetric.WithResource, ...) are appended.
// The caller owns the provider and must Shutdown it.
func NewOTLPMeterProvider(ctx context.Context, endpoint string, insecure bool, interval time.Duration, extra ...sdkmetric.Option) (*sdkmetric.MeterProvider, error) {
	var opts []otlpmetricgrpc.Option
	if endpoint != "" {
		opts = append(opts, otlpmetricgrpc.WithEndpoint(endpoint))
	}
	if insecure {
		opts = append(opts, otlpmetricgrpc.WithInsecure())
	}
	exp, err := otlpmetricgrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create otlp metric exporter: %w", err)
	}
	var readerOpts []sdkmetric.PeriodicReaderOption
	if interval > 0 {
		readerOpts = append(readerOpts, sdkmetric.WithInterval(interval))
	}
	mpOpts := append([]sdkmetric.Option{sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, readerOpts...))}, extra...)
	return sdkmetric.NewMeterProvider(mpOpts...), nil
}
