-- Headless Neovim as a real LSP client of `compart lsp`, through the editors/nvim plugin.
-- Run by tests/nvim_headless.rs:
--   nvim --headless -u NONE -c 'luafile tests/lsp/nvim_client.lua'
-- with COMPART_BIN (the compart binary), COMPART_FILE (a copy of tests/lsp/tally.ded),
-- COMPART_PLUGIN (editors/nvim) and COMPART_LOG (where to write what happened).
-- Exits 0 when every check passed, 1 otherwise (the log says which).

local log_lines = {}
local function log(fmt, ...)
  table.insert(log_lines, string.format(fmt, ...))
end
local function finish(ok)
  local f = io.open(os.getenv('COMPART_LOG'), 'w')
  if f then
    f:write(table.concat(log_lines, '\n'), '\n')
    f:close()
  end
  vim.cmd(ok and 'qall!' or 'cquit 1')
end
local function check(cond, fmt, ...)
  if not cond then
    log('FAIL: ' .. fmt, ...)
    finish(false)
    error('check failed')
  end
  log('ok: ' .. fmt, ...)
end

local ok, err = pcall(function()
  -- The setup block of editors/nvim/README.md, as written, with the plugin's real path; its
  -- default command `compart` is the binary under test (the test puts it first on PATH).
  local plugin = os.getenv('COMPART_PLUGIN')
  local readme = table.concat(vim.fn.readfile(plugin .. '/README.md'), '\n')
  local block = readme:match('## Setup.-```lua\n(.-)```')
  check(block ~= nil and block:find("require('compart').setup", 1, true) ~= nil, 'the README has a setup block')
  local placeholder = "'/path/to/compart/editors/nvim'"
  check(block:find(placeholder, 1, true) ~= nil, 'the setup block adds the plugin to the runtimepath')
  block = block:gsub(vim.pesc(placeholder), function() return string.format('%q', plugin) end)
  assert(loadstring(block, 'README setup'))()
  check(vim.fn.exepath('compart') == os.getenv('COMPART_BIN'), 'compart on PATH is the binary under test')
  -- What Neovim does after init.lua (`-u NONE` skips it): filetypes, their plugins, syntax.
  vim.cmd('filetype plugin on')
  vim.cmd('syntax on')

  vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('COMPART_FILE')))
  local bufnr = vim.api.nvim_get_current_buf()
  check(vim.bo[bufnr].filetype == 'compart', 'filetype detected: %s', vim.bo[bufnr].filetype)

  -- Highlighting without nvim-treesitter: syntax/compart.vim.
  local function syntax_at(row, col)
    local id = vim.fn.synID(row, col, 1)
    return vim.fn.synIDattr(id, 'name'), vim.fn.synIDattr(vim.fn.synIDtrans(id), 'name')
  end
  check(not pcall(require, 'nvim-treesitter'), 'no nvim-treesitter')
  local group, shown = syntax_at(2, 1)
  check(group == 'compartKeyword' and shown ~= '', '`component` highlighted by syntax: %s -> %s', group, shown)
  group = syntax_at(3, 5)
  check(group == 'compartStorage', '`channel` highlighted by syntax: %s', group)
  group = syntax_at(1, 1)
  check(group == 'compartLineComment', 'comment highlighted by syntax: %s', group)
  check(vim.bo[bufnr].commentstring == '// %s', 'commentstring: %s', vim.bo[bufnr].commentstring)

  -- The README's setup maps K to hover in this buffer (not `man`) once the server attached.
  check(vim.wait(20000, function()
    local k = vim.fn.maparg('K', 'n', false, true)
    return k.buffer == 1 and k.callback ~= nil
  end, 50), 'K is mapped buffer-locally to a Lua function')

  local function diagnostic_codes()
    local codes = {}
    for _, d in ipairs(vim.diagnostic.get(bufnr)) do
      local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code)
      codes[#codes + 1] = tostring(code)
    end
    table.sort(codes)
    return codes
  end
  local function has_code(code)
    return vim.tbl_contains(diagnostic_codes(), code)
  end

  check(vim.wait(20000, function() return has_code('E0101') end, 50), 'diagnostics arrived: %s',
    table.concat(diagnostic_codes(), ' '))

  local function request(method, params)
    local responses = vim.lsp.buf_request_sync(bufnr, method, params, 10000)
    for _, r in pairs(responses or {}) do
      if r.err then
        return nil, r.err
      end
      return r.result
    end
    return nil, 'no response'
  end
  local uri = vim.uri_from_bufnr(bufnr)
  local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)

  -- Hover on `votes` in its declaration (line 4, 0-based 3).
  local hover = request('textDocument/hover', { textDocument = { uri = uri }, position = { line = 3, character = 13 } })
  local value = hover and hover.contents and hover.contents.value or ''
  check(value:find('table votes%(item: int, voter: addr%)') ~= nil, 'hover shows the schema')

  -- Inlay hints over the whole file.
  local hints = request('textDocument/inlayHint', {
    textDocument = { uri = uri },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = #lines, character = 0 } },
  }) or {}
  local labels = {}
  for _, h in ipairs(hints) do
    labels[#labels + 1] = type(h.label) == 'string' and h.label or vim.inspect(h.label)
  end
  log('inlay hints: %s', table.concat(labels, ' | '))
  check(vim.tbl_contains(labels, ': int'), 'an inferred-type inlay hint')

  -- Neovim 0.7 shows no inlay hints: the plugin asks for them when it attaches and puts them at
  -- the ends of lines, each type hint named (`/* 𝄞 */ count_by_item(...)` is 0-based line 7).
  local ns = vim.api.nvim_get_namespaces()['compart_hints']
  check(ns ~= nil, 'the plugin has its hint namespace')
  local function virtual_text(line)
    local texts = {}
    for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, ns, { line, 0 }, { line, -1 }, { details = true })) do
      for _, chunk in ipairs(mark[4].virt_text or {}) do
        texts[#texts + 1] = chunk[1]
      end
    end
    return table.concat(texts, ' ')
  end
  check(vim.wait(10000, function() return virtual_text(7):find('count(voter): int', 1, true) ~= nil end, 50),
    'inferred types as virtual text after attaching: %s', virtual_text(7))

  -- The quick fix for `votess` (line 8, 0-based 7), applied as the editor applies edits.
  local row = 7
  local col = lines[row + 1]:find('votess', 1, true) - 1
  local diagnostics = {}
  for _, d in ipairs(vim.lsp.diagnostic.get_line_diagnostics(bufnr, row)) do
    diagnostics[#diagnostics + 1] = d
  end
  local actions = request('textDocument/codeAction', {
    textDocument = { uri = uri },
    range = { start = { line = row, character = col }, ['end'] = { line = row, character = col + 6 } },
    context = { diagnostics = diagnostics },
  }) or {}
  local fix
  for _, a in ipairs(actions) do
    log('code action: %s', a.title)
    if a.title == 'Change to `votes`' then
      fix = a
    end
  end
  check(fix ~= nil and fix.edit ~= nil, 'the quick fix is offered')
  vim.lsp.util.apply_workspace_edit(fix.edit, 'utf-16')
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]
  check(line:find(':- votes%(item, voter%)') ~= nil, 'buffer edited: %s', line)

  -- Neovim sends the edit as an incremental didChange; the error must go away.
  check(vim.wait(20000, function() return not has_code('E0101') end, 50), 'diagnostics updated: %s',
    table.concat(diagnostic_codes(), ' '))

  -- Without errors, the scaling classes appear as inlay hints too.
  local after = request('textDocument/inlayHint', {
    textDocument = { uri = uri },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = #lines, character = 0 } },
  }) or {}
  local classes = {}
  for _, h in ipairs(after) do
    if type(h.label) == 'string' and h.label:find('⟨', 1, true) then
      classes[#classes + 1] = h.label
    end
  end
  log('scaling hints: %s', table.concat(classes, ' '))
  check(#classes > 0, 'scaling classes as inlay hints')

  -- The virtual text is refreshed after the quick fix's edit (debounced): now with the classes.
  -- `votes(item, voter) :- vote(item, voter).` (0-based line 6) is a rule.
  local shown_class = function()
    local text = virtual_text(6)
    return text:find('⟨', 1, true) and (text:find('parallel') or text:find('partitioned') or text:find('sequential'))
  end
  check(vim.wait(10000, shown_class, 50), 'a scaling class as virtual text at the end of a rule: %s', virtual_text(6))
  check(virtual_text(7):find('count(voter): int', 1, true) ~= nil, 'an inferred type named in the virtual text: %s',
    virtual_text(7))

  -- K on `votes` in its declaration (line 4) opens the server's hover in a floating window.
  vim.api.nvim_win_set_cursor(0, { 4, 13 })
  vim.cmd('normal K')
  local function hover_window()
    for _, win in ipairs(vim.api.nvim_list_wins()) do
      if vim.api.nvim_win_get_config(win).relative ~= '' then
        local text = table.concat(vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(win), 0, -1, false), '\n')
        if text:find('table votes(item: int, voter: addr)', 1, true) then
          return win
        end
      end
    end
  end
  check(vim.wait(10000, function() return hover_window() ~= nil end, 50), 'K shows the hover')
  vim.api.nvim_win_close(hover_window(), true)

  -- A half-typed `bar(` in `tally` (before its `}`, 0-based line 9): the rule above keeps its last
  -- clean class as virtual text. The marks are cleared first, so what shows comes from a refresh
  -- made with the syntax error in the buffer.
  vim.api.nvim_buf_set_lines(bufnr, 9, 9, false, { '    bar(' })
  check(vim.wait(20000, function() return has_code('E0001') or has_code('E0002') end, 50),
    'a syntax error while typing: %s', table.concat(diagnostic_codes(), ' '))
  vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  require('compart.hints').refresh(bufnr)
  check(vim.wait(10000, shown_class, 50), 'the last clean class stays as virtual text through a syntax error: %s',
    virtual_text(6))
  vim.api.nvim_buf_set_lines(bufnr, 9, 10, false, {})
  check(vim.wait(20000, function() return not has_code('E0001') and not has_code('E0002') end, 50),
    'the syntax error is gone: %s', table.concat(diagnostic_codes(), ' '))

  -- A second edit (byte column 7: before the clef), then a hover in UTF-16 units: `    /* é𝄞 */ ` is 14.
  vim.api.nvim_buf_set_text(bufnr, row, 7, row, 7, { 'é' })
  local moved = request('textDocument/hover', { textDocument = { uri = uri }, position = { line = row, character = 15 } })
  local mv = moved and moved.contents and moved.contents.value or ''
  local start = moved and moved.range and moved.range.start.character
  check(mv:find('count_by_item') ~= nil and start == 14, 'hover after an edit next to a surrogate pair (range starts at %s)', tostring(start))

  -- Code lenses name the Run/Simulate commands.
  local lenses = request('textDocument/codeLens', { textDocument = { uri = uri } }) or {}
  local titles = {}
  for _, l in ipairs(lenses) do
    titles[#titles + 1] = l.command and l.command.command or '?'
  end
  check(vim.tbl_contains(titles, 'compart.run') and vim.tbl_contains(titles, 'compart.simulate'),
    'code lenses: %s', table.concat(titles, ' '))

  for _, client in pairs(vim.lsp.get_active_clients()) do
    client.stop()
  end
  finish(true)
end)
if not ok then
  log('error: %s', tostring(err))
  finish(false)
end
