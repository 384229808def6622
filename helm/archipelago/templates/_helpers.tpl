{{/*
The name of the namespaced objects and of the cluster-wide RBAC: the release name, or
<release>-archipelago when the release name does not contain "archipelago". Truncated to 63
characters, the limit of a DNS label.
*/}}
{{- define "archipelago.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The labels of every object. managed-by is Helm (.Release.Service): the operator's pod must not
carry app.kubernetes.io/managed-by=archipelago, which marks the pods the operator creates
(it would index its own pod as one of them).
*/}}
{{- define "archipelago.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels that select the operator's pod (Deployment and metrics Service). They are immutable
in a Deployment's selector, so they hold nothing that changes between upgrades.
*/}}
{{- define "archipelago.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator image: the repository at image.tag, or at the chart's appVersion.
*/}}
{{- define "archipelago.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
