{{- define "poolkeeper.labels" -}}
app.kubernetes.io/name: poolkeeper
app.kubernetes.io/component: manager
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
{{- define "poolkeeper.selector" -}}
app.kubernetes.io/name: poolkeeper
app.kubernetes.io/component: manager
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "poolkeeper.name" -}}{{ .Release.Name }}-poolkeeper{{- end }}
