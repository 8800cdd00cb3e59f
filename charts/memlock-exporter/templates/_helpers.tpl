{{/* The chart's name, or nameOverride. */}}
{{- define "memlock-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: fullnameOverride, else the release name when it
already holds the chart's name (helm install memlock-exporter ...), else
<release>-<name>. As prometheus-community's charts do.
*/}}
{{- define "memlock-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels of every object and of the pod template: the kustomize base's four
(name, part-of, component, version), then helm's own three (chart,
managed-by, instance), then commonLabels.
*/}}
{{- define "memlock-exporter.labels" -}}
app.kubernetes.io/name: {{ include "memlock-exporter.name" . }}
app.kubernetes.io/part-of: {{ include "memlock-exporter.name" . }}
app.kubernetes.io/component: exporter
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: the name only, as in the base. A DaemonSet's selector is
immutable, so nothing that changes (version) or was added later goes in.
*/}}
{{- define "memlock-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memlock-exporter.name" . }}
{{- end }}

{{/* The exporter's image: repository:tag, the tag "v" + appVersion unless set. */}}
{{- define "memlock-exporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) }}
{{- end }}

{{/* The exporter's loopback listen address, which only kube-rbac-proxy reaches. */}}
{{- define "memlock-exporter.listen" -}}
{{- printf "127.0.0.1:%d" (int .Values.port) }}
{{- end }}

{{/* The namespace of every namespaced object: namespaceOverride or the release's. */}}
{{- define "memlock-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/*
Pod Security Standard labels: hostPID, hostIPC and hostPath volumes are
outside "baseline" (make test-apiserver shows baseline rejecting the pod).
*/}}
{{- define "memlock-exporter.podSecurityLabels" -}}
pod-security.kubernetes.io/enforce: {{ .Values.namespace.podSecurity }}
pod-security.kubernetes.io/warn: {{ .Values.namespace.podSecurity }}
pod-security.kubernetes.io/audit: {{ .Values.namespace.podSecurity }}
{{- end }}
