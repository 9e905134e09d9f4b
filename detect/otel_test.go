package detect_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"

	"github.com/authprobe/authprobe/detect"
	"github.com/authprobe/authprobe/spanbuilder"
)

func TestRegisterOTel(t *testing.T) {
	d, clock := mustDetector(t, detect.Config{Window: 10 * time.Minute})
	failN(d, "203.0.113.0/24", 1, 7)
	failN(d, "10.0.0.0/24", 1, 2)
	d.Observe(spanbuilder.Span{Name: "auth.login", Result: spanbuilder.ResultFailure, FailureReason: "invalid_credentials",
		ClientSubnet: "10.0.0.0/24", Ambiguous: []string{"duplicate_username"}})

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	if err := d.RegisterOTel(mp.Meter("github.com/authprobe/authprobe/detect")); err != nil {
		t.Fatalf("RegisterOTel: %v", err)
	}

	got := mustCollectOTel(t, reader)
	want := map[string]int64{
		`authprobe.auth.attempts{failure_reason=invalid_credentials,result=failure,route=auth.login}`: 10,
		`authprobe.auth.failed_usernames{client_subnet=203.0.113.0/24}`:                               7,
		`authprobe.auth.failed_usernames{client_subnet=10.0.0.0/24}`:                                  2,
		`authprobe.detect.sources_tracked{}`:                                                          2,
		`authprobe.detect.sources_evicted{}`:                                                          0,
		`authprobe.auth.ambiguous{kind=duplicate_username,route=auth.login}`:                          1,
	}
	assertOTel(t, got, want)

	// The next collection sees the window move: everything expired.
	clock.Add(13 * time.Minute)
	got = mustCollectOTel(t, reader)
	want = map[string]int64{
		`authprobe.auth.attempts{failure_reason=invalid_credentials,result=failure,route=auth.login}`: 10,
		`authprobe.detect.sources_tracked{}`:                                 0,
		`authprobe.detect.sources_evicted{}`:                                 0,
		`authprobe.auth.ambiguous{kind=duplicate_username,route=auth.login}`: 1,
	}
	assertOTel(t, got, want)

	if err := d.RegisterOTel(nil); err == nil {
		t.Error("RegisterOTel(nil): no error")
	}
}

// mustCollectOTel reads reader once and returns the int64 data points by
// name{key=value,...} (attribute order is the set's, which is sorted),
// checking counters are cumulative monotonic sums and the rest gauges.
func mustCollectOTel(tb testing.TB, reader sdkmetric.Reader) map[string]int64 {
	tb.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		tb.Fatalf("collect: %v", err)
	}
	out := make(map[string]int64)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !data.IsMonotonic || data.Temporality != metricdata.CumulativeTemporality {
					tb.Errorf("%s: monotonic %v temporality %v", m.Name, data.IsMonotonic, data.Temporality)
				}
				points = data.DataPoints
			case metricdata.Gauge[int64]:
				points = data.DataPoints
			default:
				tb.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
			for _, p := range points {
				out[m.Name+attrKey(p.Attributes.ToSlice())] = p.Value
			}
		}
	}
	return out
}

func attrKey(kvs []attribute.KeyValue) string {
	s := "{"
	for i, kv := range kvs {
		if i > 0 {
			s += ","
		}
		s += string(kv.Key) + "=" + kv.Value.Emit()
	}
	return s + "}"
}

func assertOTel(tb testing.TB, got, want map[string]int64) {
	tb.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			tb.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			tb.Errorf("unexpected point %s = %v", k, v)
		}
	}
}

// TestOTLPMeterProvider pushes the detector's metrics over OTLP/gRPC to a
// receiver on loopback and checks what arrives.
func TestOTLPMeterProvider(t *testing.T) {
	rcv := mustOTLPReceiver(t)
	d, _ := mustDetector(t, detect.Config{})
	failN(d, "203.0.113.0/24", 1, 4)
	d.Observe(spanbuilder.Span{Name: "auth.token", Result: spanbuilder.ResultSuccess, Ambiguous: []string{"cl_te"}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mp, err := detect.NewOTLPMeterProvider(ctx, rcv.addr, true, time.Hour,
		sdkmetric.WithResource(resource.Empty()))
	if err != nil {
		t.Fatalf("NewOTLPMeterProvider: %v", err)
	}
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	if err := d.RegisterOTel(mp.Meter("github.com/authprobe/authprobe/detect")); err != nil {
		t.Fatalf("RegisterOTel: %v", err)
	}
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}

	got := rcv.points()
	want := map[string]int64{
		`authprobe.auth.attempts{failure_reason=invalid_credentials,result=failure,route=auth.login}`: 4,
		`authprobe.auth.failed_usernames{client_subnet=203.0.113.0/24}`:                               4,
		`authprobe.auth.attempts{failure_reason=,result=success,route=auth.token}`:                    1,
		`authprobe.detect.sources_tracked{}`:                                                          1,
		`authprobe.detect.sources_evicted{}`:                                                          0,
		`authprobe.auth.ambiguous{kind=cl_te,route=auth.token}`:                                       1,
	}
	assertOTel(t, got, want)
}

type otlpReceiver struct {
	collectorpb.UnimplementedMetricsServiceServer
	addr string

	mu  sync.Mutex
	got map[string]int64
}

func (r *otlpReceiver) Export(_ context.Context, req *collectorpb.ExportMetricsServiceRequest) (*collectorpb.ExportMetricsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				var points []*metricspb.NumberDataPoint
				switch {
				case m.GetSum() != nil:
					points = m.GetSum().GetDataPoints()
				case m.GetGauge() != nil:
					points = m.GetGauge().GetDataPoints()
				}
				for _, p := range points {
					var kvs []attribute.KeyValue
					for _, a := range p.GetAttributes() {
						kvs = append(kvs, attribute.String(a.GetKey(), a.GetValue().GetStringValue()))
					}
					r.got[m.GetName()+attrKey(kvs)] = p.GetAsInt()
				}
			}
		}
	}
	return &collectorpb.ExportMetricsServiceResponse{}, nil
}

func (r *otlpReceiver) points() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.got))
	for k, v := range r.got {
		out[k] = v
	}
	return out
}

// mustOTLPReceiver serves the OTLP metrics service on a loopback port.
func mustOTLPReceiver(tb testing.TB) *otlpReceiver {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	r := &otlpReceiver{addr: lis.Addr().String(), got: make(map[string]int64)}
	srv := grpc.NewServer()
	collectorpb.RegisterMetricsServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	return r
}
