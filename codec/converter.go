package codec

import (
	"fmt"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc"
)

// DataConverter is Temporal's default data converter with c encrypting
// every payload it produces and decrypting every payload it reads: the
// client.Options.DataConverter (and worker replayer's) of a process that
// runs with encryption on.
func DataConverter(c converter.PayloadCodec) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// FailureConverter is Temporal's default failure converter moving each
// failure's message and stack trace into an attribute payload that dc
// encrypts; the failure's type stays readable. It is the
// client.Options.FailureConverter beside DataConverter.
func FailureConverter(dc converter.DataConverter) converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          dc,
		EncodeCommonAttributes: true,
	})
}

// DialOptions encrypt and decrypt at the gRPC layer, for a client that
// reads raw history (operator commands): every payload of a response is
// decoded with c and every failure's message and stack trace restored, and
// every payload of a request encrypted, so such a client works as if no
// encryption were on. Search attributes are left alone in both
// directions. A client using these must keep the default data and failure
// converters.
func DialOptions(c converter.PayloadCodec) ([]grpc.DialOption, error) {
	// The failure interceptor must come first: inbound, the codec then
	// decrypts the failure attributes before they are unpacked; outbound,
	// they are packed before being encrypted.
	failures, err := converter.NewFailureGRPCClientInterceptor(converter.NewFailureGRPCClientInterceptorOptions{
		EncodeCommonAttributes: true,
	})
	if err != nil {
		return nil, fmt.Errorf("codec: failure interceptor: %w", err)
	}
	payloads, err := converter.NewPayloadCodecGRPCClientInterceptor(converter.PayloadCodecGRPCClientInterceptorOptions{
		Codecs: []converter.PayloadCodec{c},
	})
	if err != nil {
		return nil, fmt.Errorf("codec: payload interceptor: %w", err)
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(failures, payloads)}, nil
}
