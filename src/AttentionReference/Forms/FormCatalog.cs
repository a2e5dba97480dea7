using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using AttentionReference.Tensors;

namespace AttentionReference.Forms;

/// <summary>Every form the oracle knows, by name, and the spec text of each (its source file's doc comment).</summary>
public static partial class FormCatalog
{
    /// <summary>All forms, in the order of FORMS.md.</summary>
    public static IReadOnlyList<IForm> All { get; } =
    [
        new Softmax.Softmax(),
        new Softmax.Sparse(),
        new Softmax.Mla(),
        new Softmax.Forgetting(),
        new Linear.Linear(),
        new GatedLinear.Retention(),
        new GatedLinear.SimpleGla(),
        new GatedLinear.Gla(),
        new GatedLinear.Hgrn2(),
        new GatedLinear.Rwkv6(),
        new GatedLinear.Mlstm(),
        new Delta.DeltaRule(),
        new Delta.GatedDeltaRule(),
        new Delta.Kda(),
        new Delta.Rwkv7(),
        new StateSpace.S4d(),
        new StateSpace.H3(),
        new StateSpace.Mamba(),
        new StateSpace.Ssd(),
        new Hybrid.Power(),
        new Hybrid.NatsL(),
        new Hybrid.Based(),
    ];

    /// <summary>The form called <paramref name="name"/>; an <see cref="InputException"/> listing the known ones otherwise.</summary>
    public static IForm Find(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new InputException($"unknown form '{name}'; known forms: {string.Join(", ", All.Select(f => f.Name))}");

    /// <summary>
    /// The form's definition as its source file's doc comment says it: the text of the <c>///</c> block above the
    /// form's class, with the XML tags taken out. The source is embedded in the assembly at build time, so the spec
    /// cannot drift from the code's comment.
    /// </summary>
    public static string Spec(IForm form)
    {
        ArgumentNullException.ThrowIfNull(form);
        using Stream stream = typeof(FormCatalog).Assembly.GetManifestResourceStream("form-source/" + form.SourceFile)
            ?? throw new InvalidOperationException($"the source of {form.Name} ({form.SourceFile}) is not embedded");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var lines = new List<string>();
        bool inBlock = false;
        while (reader.ReadLine() is { } line)
        {
            string trimmed = line.TrimStart();
            if (trimmed.StartsWith("///", StringComparison.Ordinal))
            {
                inBlock = true;
                lines.Add(trimmed.Length > 3 && trimmed[3] == ' ' ? trimmed[4..] : trimmed[3..]);
            }
            else if (inBlock)
            {
                break; // the first doc block in the file is the form's
            }
        }
        var text = new StringBuilder();
        foreach (string line in lines)
        {
            string plain = XmlTag().Replace(line, m => m.Groups["name"].Success ? m.Groups["name"].Value : "");
            if (plain.Length == 0 && XmlTag().IsMatch(line))
            {
                continue; // a line that held only tags
            }
            text.AppendLine(System.Net.WebUtility.HtmlDecode(plain));
        }
        return text.ToString().TrimEnd() + Environment.NewLine;
    }

    // <c>x</c> and <see cref="T"/> keep their content; every other tag disappears.
    [GeneratedRegex("""<see cref="(?:[A-Z]:)?(?<name>[^"]+)"\s*/>|</?[a-zA-Z]+[^>]*>""")]
    private static partial Regex XmlTag();

    /// <summary>The library's version, written into every output file.</summary>
    public static string LibraryVersion { get; } =
        typeof(FormCatalog).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? "0.0.0";
}
