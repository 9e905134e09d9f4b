package k8smeta

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// apiClient makes the agent's only API calls: list and watch pods (of one
// node), get a ReplicaSet, get a Job. It knows three API groups, not the
// hundred-odd types of client-go's generated clientset, which would
// double the agent's binary.
type apiClient struct {
	core, apps, batch rest.Interface
	params            runtime.ParameterCodec
}

func newAPIClient(cfg *rest.Config) (*apiClient, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	// ListOptions, WatchEvent and Status, under every group version used.
	for _, gv := range []schema.GroupVersion{corev1.SchemeGroupVersion, appsv1.SchemeGroupVersion, batchv1.SchemeGroupVersion} {
		metav1.AddToGroupVersion(scheme, gv)
	}
	codecs := serializer.NewCodecFactory(scheme)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	client := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion = &gv
		c.APIPath = apiPath
		c.NegotiatedSerializer = codecs.WithoutConversion()
		return rest.RESTClientForConfigAndClient(c, hc)
	}
	a := &apiClient{params: runtime.NewParameterCodec(scheme)}
	if a.core, err = client(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if a.apps, err = client(appsv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if a.batch, err = client(batchv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	return a, nil
}

func timeoutOf(o metav1.ListOptions) time.Duration {
	if o.TimeoutSeconds != nil {
		return time.Duration(*o.TimeoutSeconds) * time.Second
	}
	return 0
}

func (a *apiClient) listPods(ctx context.Context, o metav1.ListOptions) (*corev1.PodList, error) {
	list := &corev1.PodList{}
	err := a.core.Get().Resource("pods").VersionedParams(&o, a.params).Timeout(timeoutOf(o)).Do(ctx).Into(list)
	return list, err
}

func (a *apiClient) watchPods(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	o.Watch = true
	return a.core.Get().Resource("pods").VersionedParams(&o, a.params).Timeout(timeoutOf(o)).Watch(ctx)
}

// get reads one ReplicaSet or Job.
func (a *apiClient) get(ctx context.Context, k ownerKey) (metav1.Object, error) {
	var c rest.Interface
	var obj interface {
		runtime.Object
		metav1.Object
	}
	switch k.Kind {
	case KindReplicaSet:
		c, obj = a.apps, &appsv1.ReplicaSet{}
	case KindJob:
		c, obj = a.batch, &batchv1.Job{}
	default:
		return nil, fmt.Errorf("no lookup for kind %s", k.Kind)
	}
	res := ownerResource(k.Kind).Resource
	if err := c.Get().Namespace(k.Namespace).Resource(res).Name(k.Name).Do(ctx).Into(obj); err != nil {
		return nil, err
	}
	return obj, nil
}
