using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace MlNetFinetune.Predictor.Serving;

/// <summary>
/// Refuses requests a web page could make on the user's behalf. A page on any site can POST a "simple" request
/// (text/plain, a form) to a server on the user's loopback address, and with DNS rebinding can even read the answer;
/// browsers send an Origin header with such requests and the attacker's domain in Host. So: the Host must be localhost,
/// an IP address or an allowed name, and a request that carries an Origin must come from the server's own origin or an
/// allowed one. Clients that are not browsers (curl, HttpClient) send no Origin and are unaffected.
/// </summary>
public sealed class RequestOriginPolicy(ServeOptions options)
{
    private readonly HashSet<string> _hosts = new(options.AllowedHosts, StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _origins = new(options.AllowedOrigins.Select(o => o.TrimEnd('/')), StringComparer.OrdinalIgnoreCase);

    /// <summary>The refusal for <paramref name="request"/>, or null when it may proceed.</summary>
    public IResult? Check(HttpRequest request)
    {
        var host = request.Host.Host;
        if (!IsAllowedHost(host))
        {
            return PredictionEndpoints.Error(StatusCodes.Status403Forbidden,
                $"Host '{request.Host}' is not this server's name; add it with --allowed-hosts if clients reach the server by that name");
        }

        if (request.Headers.Origin is [{ } origin] && !IsAllowedOrigin(origin, request))
        {
            return PredictionEndpoints.Error(StatusCodes.Status403Forbidden,
                $"Origin '{origin}' may not call this server; allow a web app's origin with --allowed-origins");
        }

        return null;
    }

    /// <summary>
    /// Adds CORS headers for an allowed cross-origin caller, so its page may read the answer; returns true when the
    /// request was the browser's preflight (OPTIONS), which is then answered in full.
    /// </summary>
    public bool AllowCors(HttpContext context)
    {
        var request = context.Request;
        if (request.Headers.Origin is not [{ } origin] || IsSameOrigin(origin, request) || !IsAllowedOrigin(origin, request))
        {
            return false;
        }

        context.Response.Headers[HeaderNames.AccessControlAllowOrigin] = origin;
        context.Response.Headers[HeaderNames.Vary] = HeaderNames.Origin;
        if (!HttpMethods.IsOptions(request.Method) || request.Headers.AccessControlRequestMethod.Count == 0)
        {
            return false;
        }

        // The preflight a browser sends before a POST of application/octet-stream or multipart with custom headers.
        context.Response.Headers[HeaderNames.AccessControlAllowMethods] = "GET, POST";
        context.Response.Headers[HeaderNames.AccessControlAllowHeaders] = "Content-Type";
        context.Response.StatusCode = StatusCodes.Status204NoContent;
        return true;
    }

    private bool IsAllowedHost(string host) =>
        _hosts.Contains("*") || _hosts.Contains(host) || string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)
        || IPAddress.TryParse(host.Trim('[', ']'), out _);

    private bool IsAllowedOrigin(string origin, HttpRequest request) =>
        IsSameOrigin(origin, request) || _origins.Contains("*") || _origins.Contains(origin.TrimEnd('/'));

    private static bool IsSameOrigin(string origin, HttpRequest request) =>
        Uri.TryCreate(origin, UriKind.Absolute, out var uri)
        && string.Equals(uri.Scheme, request.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(uri.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase);
}
