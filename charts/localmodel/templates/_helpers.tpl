{{/* Names, labels and shared snippets. */}}

{{- define "localmodel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object-name prefix: the release name, plus the chart name unless the release name has it. */}}
{{- define "localmodel.fullname" -}}
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

{{- define "localmodel.operatorName" -}}
{{- printf "%s-operator" (include "localmodel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "localmodel.routerName" -}}
{{- printf "%s-router" (include "localmodel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "localmodel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "localmodel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: localmodel
{{- end }}

{{/* Selector labels of one component: call with (dict "root" $ "component" "router"). */}}
{{- define "localmodel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "localmodel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "localmodel.componentLabels" -}}
{{ include "localmodel.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* image reference: call with (dict "root" $ "image" .Values.router.image). */}}
{{- define "localmodel.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The restricted Pod Security Standard, for both components' pods and containers. */}}
{{- define "localmodel.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "localmodel.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end }}

{{/* Whether RBAC is cluster-wide (no watchNamespaces) or per namespace. */}}
{{- define "localmodel.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{- end }}
{{- end }}

{{- define "localmodel.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "localmodel.routerName" .)) .Values.router.apiKeys.existingSecret }}
{{- end }}
