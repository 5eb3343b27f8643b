{{/* Resource names: <release>-<chart>, cut to 63 characters (a DNS label). */}}
{{- define "apiscope.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's resources: <fullname>-<component>. */}}
{{- define "apiscope.componentName" -}}
{{- printf "%s-%s" (include "apiscope.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "apiscope.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "apiscope.selectorLabels" . }}
{{- end -}}

{{/* Labels that select one component's pods (never change them: selectors are immutable). */}}
{{- define "apiscope.selectorLabels" -}}
app.kubernetes.io/name: {{ default .root.Chart.Name .root.Values.nameOverride }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "apiscope.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The collector's OTLP gRPC address inside the cluster. */}}
{{- define "apiscope.collectorOtlpEndpoint" -}}
{{- printf "http://%s.%s.svc:4317" (include "apiscope.componentName" (dict "root" . "component" "collector")) .Release.Namespace -}}
{{- end -}}

{{/* The relay's token Secret: the existing one, or the one the chart generates. */}}
{{- define "apiscope.relayTokenSecret" -}}
{{- default (include "apiscope.componentName" (dict "root" . "component" "relay-token")) .Values.relay.token.existingSecret -}}
{{- end -}}

{{/* apiscope.yaml of the exporter: what the chart sets, then exporter.config over it. */}}
{{- define "apiscope.exporterConfig" -}}
{{- $config := dict "metrics_address" (printf "0.0.0.0:%d" (int .Values.exporter.metricsPort)) -}}
{{- if .Values.collector.enabled -}}
{{- $_ := set $config "otlp_endpoint" (include "apiscope.collectorOtlpEndpoint" .) -}}
{{- else if .Values.exporter.otlpEndpoint -}}
{{- $_ := set $config "otlp_endpoint" .Values.exporter.otlpEndpoint -}}
{{- end -}}
{{- if .Values.clusterName -}}
{{- $_ := set $config "cluster_name" .Values.clusterName -}}
{{- end -}}
{{- if .Values.exporter.capturePolicy -}}
{{- $_ := set $config "capture_policy" "/etc/apiscope/capture-policy.yaml" -}}
{{- end -}}
{{- toYaml (merge (deepCopy .Values.exporter.config) $config) -}}
{{- end -}}
