package kubetest

import (
	"context"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// Apply creates every object of a multi-document YAML stream (manifests,
// helm template output) as cluster-admin, with strict server-side field
// validation, and returns "Kind/name" of each. A refused object fails tb
// (as Errorf, so every refusal is reported).
func (c *Cluster) Apply(tb testing.TB, name, stream string) []string {
	tb.Helper()
	dyn, err := dynamic.NewForConfig(c.Admin)
	if err != nil {
		tb.Fatal(err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(c.Admin)
	if err != nil {
		tb.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	var created []string
	for i, doc := range docSep.Split(stream, -1) {
		if onlyComments(doc) {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			tb.Fatalf("%s document %d: %v", name, i+1, err)
		}
		if err := c.Create(obj, dyn, mapper); err != nil {
			tb.Errorf("%s: create %s %s: %v", name, obj.GetKind(), obj.GetName(), err)
			continue
		}
		created = append(created, obj.GetKind()+"/"+obj.GetName())
	}
	return created
}

// Create creates one object with strict field validation.
func (c *Cluster) Create(obj *unstructured.Unstructured, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper) error {
	gvk := obj.GroupVersionKind()
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if ns := obj.GetNamespace(); ns != "" {
		ri = dyn.Resource(mapping.Resource).Namespace(ns)
	}
	_, err = ri.Create(context.Background(), obj, metav1.CreateOptions{FieldValidation: "Strict"})
	return err
}

func onlyComments(doc string) bool {
	for _, l := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}
