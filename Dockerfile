# The poolkeeper manager. Build: docker build -t poolkeeper:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/poolkeeper .

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/poolkeeper /poolkeeper
USER 65532:65532
ENTRYPOINT ["/poolkeeper"]
