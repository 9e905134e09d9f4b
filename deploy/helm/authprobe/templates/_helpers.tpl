{{/* The release's name prefix: "authprobe" for a release named so. */}}
{{- define "authprobe.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 53 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "authprobe.agent" -}}{{ include "authprobe.fullname" . }}-agent{{- end -}}
{{- define "authprobe.collector" -}}{{ include "authprobe.fullname" . }}-collector{{- end -}}

{{/* Labels of every object; name is the component's name. */}}
{{- define "authprobe.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: authprobe
{{- if .root.Values.helmLabels }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}
{{- end -}}

{{- define "authprobe.usernameKeySecret" -}}
{{- .Values.usernameKey.existingSecret | default (printf "%s-username-key" (include "authprobe.fullname" .)) -}}
{{- end -}}

{{- define "authprobe.exporterEndpoint" -}}
{{- if .Values.exporter.endpoint -}}
{{- .Values.exporter.endpoint -}}
{{- else if .Values.collector.enabled -}}
{{- printf "%s.%s.svc:4317" (include "authprobe.collector" .) .Release.Namespace -}}
{{- else -}}
{{- fail "exporter.endpoint is empty and collector.enabled is false: the agent has nowhere to send spans" -}}
{{- end -}}
{{- end -}}
