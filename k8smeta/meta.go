package k8smeta

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Defaults of Config.
const (
	DefaultProcRoot       = "/proc"
	DefaultMaxProcesses   = 4096
	DefaultDeletedTTL     = 2 * time.Minute
	DefaultMaxDeleted     = 512
	DefaultOwnerTimeout   = 10 * time.Second
	DefaultOwnerRetryBase = time.Second
	DefaultOwnerRetryMax  = 5 * time.Minute
	DefaultCollectEvery   = 30 * time.Second
)

// Config configures a Meta.
type Config struct {
	// NodeName is this node (from the downward API). The watch lists only
	// pods with spec.nodeName equal to it; without it there is no watch.
	NodeName string
	// REST reaches the API server with the agent's identity; nil: no API,
	// identities are what cgroups tell.
	REST *rest.Config
	// ProcRoot is where /proc is; default "/proc".
	ProcRoot string
	// MaxProcesses bounds the remembered process cgroups; default 4096.
	MaxProcesses int
	// DeletedTTL is how long a deleted pod is still known, so that spans of
	// its last requests, exported after it went, still name it; default
	// 2m, at most MaxDeleted pods (default 512).
	DeletedTTL time.Duration
	MaxDeleted int
	// OwnerTimeout bounds one ReplicaSet or Job lookup; default 10s.
	OwnerTimeout time.Duration
	// OwnerRetryBase and OwnerRetryMax bound the backoff of failed owner
	// lookups; default 1s and 5m.
	OwnerRetryBase, OwnerRetryMax time.Duration
	// CollectEvery is how often deleted pods past their TTL and owners no
	// pod refers to are dropped; default 30s.
	CollectEvery time.Duration
}

// Meta answers who a process is: its cgroup, and from a watch of this
// node's pods, its pod, container, workload and service. Lookups never
// wait for the API: what is not known yet is left out, and Changes tells
// when more became known. Create it with New, start the watch with Run.
type Meta struct {
	cfg   Config
	procs *procCache

	// Set when an API is configured.
	informer cache.SharedIndexInformer
	api      *apiClient
	owners   *ownerCache
	queue    workqueue.TypedRateLimitingInterface[ownerKey]

	changes chan struct{}

	mu      sync.Mutex
	deleted map[types.UID]deletedPod
	state   State
}

type deletedPod struct {
	pod *corev1.Pod
	at  time.Time
}

// Index names of the pod store.
const (
	byUID       = "uid"
	byContainer = "container"
)

// New validates cfg and prepares the watch; it contacts nothing.
func New(cfg Config) (*Meta, error) {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = DefaultProcRoot
	}
	if cfg.MaxProcesses <= 0 {
		cfg.MaxProcesses = DefaultMaxProcesses
	}
	if cfg.DeletedTTL <= 0 {
		cfg.DeletedTTL = DefaultDeletedTTL
	}
	if cfg.MaxDeleted <= 0 {
		cfg.MaxDeleted = DefaultMaxDeleted
	}
	if cfg.OwnerTimeout <= 0 {
		cfg.OwnerTimeout = DefaultOwnerTimeout
	}
	if cfg.OwnerRetryBase <= 0 {
		cfg.OwnerRetryBase = DefaultOwnerRetryBase
	}
	if cfg.OwnerRetryMax <= 0 {
		cfg.OwnerRetryMax = DefaultOwnerRetryMax
	}
	if cfg.CollectEvery <= 0 {
		cfg.CollectEvery = DefaultCollectEvery
	}
	m := &Meta{
		cfg:     cfg,
		procs:   newProcCache(cfg.ProcRoot, cfg.MaxProcesses),
		changes: make(chan struct{}, 1),
		deleted: map[types.UID]deletedPod{},
		state:   State{Node: cfg.NodeName, Phase: PhaseOff},
	}
	if cfg.REST == nil {
		return m, nil
	}
	if cfg.NodeName == "" {
		return nil, errors.New("kubernetes api: no node name: the watch lists only this node's pods (set NODE_NAME from spec.nodeName)")
	}
	rc := rest.CopyConfig(cfg.REST)
	if rc.UserAgent == "" {
		rc.UserAgent = "authprobe"
	}
	// Protobuf: smaller and cheaper to decode than JSON for pods.
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	var err error
	if m.api, err = newAPIClient(rc); err != nil {
		return nil, fmt.Errorf("kubernetes api client: %w", err)
	}
	m.owners = newOwnerCache()
	m.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[ownerKey](cfg.OwnerRetryBase, cfg.OwnerRetryMax),
		workqueue.TypedRateLimitingQueueConfig[ownerKey]{Name: "authprobe-owners"})
	m.state.Phase = PhaseConnecting
	m.state.API = true

	node := fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = node
			list, err := m.api.listPods(ctx, o)
			m.apiCall(err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = node
			w, err := m.api.watchPods(ctx, o)
			m.apiCall(err)
			return w, err
		},
	}
	m.informer = cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{
		Indexers: cache.Indexers{
			byUID: func(obj any) ([]string, error) { return []string{string(obj.(*corev1.Pod).UID)}, nil },
			byContainer: func(obj any) ([]string, error) {
				return containerIDs(obj.(*corev1.Pod)), nil
			},
		},
	})
	if err := m.informer.SetTransform(func(obj any) (any, error) {
		if p, ok := obj.(*corev1.Pod); ok {
			return strip(p), nil
		}
		return obj, nil
	}); err != nil {
		return nil, fmt.Errorf("kubernetes pod watch: %w", err)
	}
	// Failed calls are recorded by the list and watch functions above; the
	// default handler would log, which a library does not.
	if err := m.informer.SetWatchErrorHandlerWithContext(func(context.Context, *cache.Reflector, error) {}); err != nil {
		return nil, fmt.Errorf("kubernetes pod watch: %w", err)
	}
	if _, err := m.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.podChanged(nil, obj) },
		UpdateFunc: func(old, obj any) { m.podChanged(old, obj) },
		DeleteFunc: m.podDeleted,
	}); err != nil {
		return nil, fmt.Errorf("kubernetes pod watch: %w", err)
	}
	return m, nil
}

// Run watches this node's pods and resolves their owners until ctx ends.
// It returns at once when no API is configured. A failed list or watch is
// retried with the client's backoff (up to 30s apart) and the pods are
// listed again when the API is back; meanwhile the last known pods stay.
func (m *Meta) Run(ctx context.Context) {
	if m.informer == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		m.informer.RunWithContext(ctx)
	}()
	go func() {
		defer wg.Done()
		m.resolveOwners(ctx)
	}()
	go func() {
		defer wg.Done()
		// The pod list's first sync, for the state.
		if cache.WaitForCacheSync(ctx.Done(), m.informer.HasSynced) {
			m.mu.Lock()
			m.state.Synced = true
			m.setPhase(PhaseSynced)
			m.mu.Unlock()
		}
	}()
	t := time.NewTicker(m.cfg.CollectEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.queue.ShutDown()
			wg.Wait()
			return
		case now := <-t.C:
			m.collect(now)
		}
	}
}

// Changes is signalled (coalesced) when a pod of this node appeared,
// changed, went, or an owner was resolved: processes that did not match a
// selector before may now, and identities may say more.
func (m *Meta) Changes() <-chan struct{} { return m.changes }

func (m *Meta) notify() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// Process tells who pid is. It reads /proc (cached per process) and the
// watch's store; it never waits for the API.
func (m *Meta) Process(pid uint32) Identity {
	return m.Identify(m.procs.container(pid))
}

// Identify completes what a cgroup says with what the watch knows.
func (m *Meta) Identify(c Container) Identity {
	id := Identity{Container: c}
	if !c.InPod() || m.informer == nil {
		return id
	}
	pod := m.pod(c)
	if pod == nil {
		return id
	}
	id.Known = true
	id.Namespace, id.PodName, id.NodeName, id.Labels = pod.Namespace, pod.Name, pod.Spec.NodeName, pod.Labels
	id.ContainerName, id.Image = container(pod, c.ContainerID)
	if ref, ok := owner(pod); ok {
		switch ref.Kind {
		case KindReplicaSet:
			id.ReplicaSet = ref.Name
			id.Deployment = m.owners.parent(keyOf(pod.Namespace, ref), KindDeployment)
		case KindJob:
			id.Job = ref.Name
			id.CronJob = m.owners.parent(keyOf(pod.Namespace, ref), KindCronJob)
		case KindStatefulSet:
			id.StatefulSet = ref.Name
		case KindDaemonSet:
			id.DaemonSet = ref.Name
		}
	}
	id.resolveService(pod.Annotations)
	return id
}

// pod finds the pod of a cgroup: by container ID first (the status knows
// it once the container runs), else by pod UID; a pod deleted moments ago
// still counts.
func (m *Meta) pod(c Container) *corev1.Pod {
	idx := m.informer.GetIndexer()
	if c.ContainerID != "" {
		if objs, _ := idx.ByIndex(byContainer, c.ContainerID); len(objs) > 0 {
			return objs[0].(*corev1.Pod)
		}
	}
	if objs, _ := idx.ByIndex(byUID, c.PodUID); len(objs) > 0 {
		return objs[0].(*corev1.Pod)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.deleted[types.UID(c.PodUID)]; ok {
		return d.pod
	}
	return nil
}

func (m *Meta) podChanged(old, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	m.mu.Lock()
	delete(m.deleted, pod.UID)
	m.mu.Unlock()
	if ref, ok := owner(pod); ok && (ref.Kind == KindReplicaSet || ref.Kind == KindJob) {
		k := keyOf(pod.Namespace, ref)
		if m.owners.want(k) {
			m.queue.Add(k)
		}
	}
	// A relist after a reconnect updates every pod: only a change that
	// identities can see is worth re-evaluating processes for.
	if o, ok := old.(*corev1.Pod); ok && samePod(o, pod) {
		return
	}
	m.notify()
}

func (m *Meta) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	m.mu.Lock()
	m.deleted[pod.UID] = deletedPod{pod: pod, at: time.Now()}
	for len(m.deleted) > m.cfg.MaxDeleted {
		m.dropOldestDeleted()
	}
	m.mu.Unlock()
	m.notify()
}

func (m *Meta) dropOldestDeleted() {
	var oldest types.UID
	var at time.Time
	for uid, d := range m.deleted {
		if oldest == "" || d.at.Before(at) {
			oldest, at = uid, d.at
		}
	}
	delete(m.deleted, oldest)
}

// collect forgets deleted pods past their TTL and owners no pod refers to,
// so that memory follows the node's pods.
func (m *Meta) collect(now time.Time) {
	m.mu.Lock()
	for uid, d := range m.deleted {
		if now.Sub(d.at) > m.cfg.DeletedTTL {
			delete(m.deleted, uid)
		}
	}
	live := map[types.UID]bool{}
	for _, d := range m.deleted {
		if ref, ok := owner(d.pod); ok {
			live[ref.UID] = true
		}
	}
	m.mu.Unlock()
	for _, obj := range m.informer.GetStore().List() {
		if ref, ok := owner(obj.(*corev1.Pod)); ok {
			live[ref.UID] = true
		}
	}
	m.owners.keep(live)
}

// apiCall records the outcome of one list or watch call.
func (m *Meta) apiCall(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		if m.state.Phase == PhaseDisconnected {
			m.state.Reconnects++
		}
		if m.state.Synced {
			m.setPhase(PhaseSynced)
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	m.state.Errors++
	m.state.LastError = err.Error()
	m.state.LastErrorAt = time.Now()
	m.setPhase(PhaseDisconnected)
}

func (m *Meta) setPhase(p Phase) {
	if m.state.Phase != p {
		m.state.Phase, m.state.Since = p, time.Now()
	}
}

// resolveOwners looks up the ReplicaSets and Jobs of this node's pods for
// their Deployments and CronJobs, one at a time, retrying failures with
// backoff.
func (m *Meta) resolveOwners(ctx context.Context) {
	for {
		k, quit := m.queue.Get()
		if quit {
			return
		}
		parent, err := m.lookup(ctx, k)
		switch {
		case err == nil:
			m.queue.Forget(k)
			if m.owners.set(k, parent) && parent != "" {
				m.notify()
			}
		case apierrors.IsNotFound(err):
			// Gone, or replaced by a namesake: nothing to resolve to.
			m.queue.Forget(k)
			m.owners.set(k, "")
		default:
			if ctx.Err() == nil {
				m.queue.AddRateLimited(k)
			}
		}
		m.mu.Lock()
		m.state.OwnerLookups++
		if err != nil && !apierrors.IsNotFound(err) {
			m.state.OwnerErrors++
		}
		m.mu.Unlock()
		m.queue.Done(k)
	}
}

// lookup gets a ReplicaSet or Job and returns its controller's name (a
// Deployment's or CronJob's), "" when it has none.
func (m *Meta) lookup(ctx context.Context, k ownerKey) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OwnerTimeout)
	defer cancel()
	obj, err := m.api.get(ctx, k)
	if err != nil {
		return "", err
	}
	want := KindDeployment
	if k.Kind == KindJob {
		want = KindCronJob
	}
	if obj.GetUID() != k.UID {
		return "", apierrors.NewNotFound(ownerResource(k.Kind), k.Name)
	}
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil && ref.Kind == want {
		return ref.Name, nil
	}
	return "", nil
}

// State is the watch's health, for metrics and readiness detail.
type State struct {
	API    bool   // an API is configured
	Node   string // the node whose pods are watched
	Phase  Phase
	Since  time.Time // of the phase
	Synced bool      // the first list completed
	// Errors counts failed list and watch calls; Reconnects the calls that
	// succeeded after a failure (each one resyncs).
	Errors, Reconnects uint64
	// LastError is the last failed call's error (no credentials are in
	// client-go's errors: they name the URL and the cause).
	LastError   string
	LastErrorAt time.Time
	// Pods of this node in the watch, deleted pods still remembered, and
	// cached owners.
	Pods, Deleted, Owners int
	// OwnerLookups counts ReplicaSet and Job gets, OwnerErrors those that
	// failed other than by not finding the object.
	OwnerLookups, OwnerErrors uint64
}

// Phase of the pod watch.
type Phase string

const (
	PhaseOff          Phase = "off"          // no API configured
	PhaseConnecting   Phase = "connecting"   // first list under way
	PhaseSynced       Phase = "synced"       // watching
	PhaseDisconnected Phase = "disconnected" // the API failed; retrying, last known pods kept
)

// State returns a snapshot of the watch's health.
func (m *Meta) State() State {
	m.mu.Lock()
	s := m.state
	s.Deleted = len(m.deleted)
	m.mu.Unlock()
	if m.informer != nil {
		s.Pods = len(m.informer.GetStore().ListKeys())
		s.Owners = m.owners.len()
	}
	return s
}

// ProcessesCached is how many process cgroups are remembered.
func (m *Meta) ProcessesCached() int {
	m.procs.mu.Lock()
	defer m.procs.mu.Unlock()
	return m.procs.lru.Len()
}
