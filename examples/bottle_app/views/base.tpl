<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{title}}</title>
  <style>
    body { font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 2rem auto; padding: 0 1rem; }
    nav { display: flex; gap: 1rem; align-items: center; margin-bottom: 1.5rem; }
    nav form { margin: 0; }
    label { display: block; margin: .75rem 0 .25rem; }
    input[type=email], input[type=password] { width: 100%; padding: .4rem; box-sizing: border-box; }
    button { margin-top: 1rem; padding: .4rem 1rem; }
    .flash { padding: .5rem .75rem; border-radius: 4px; margin-bottom: .5rem; }
    .flash.success { background: #e6f4ea; } .flash.error { background: #fdecea; }
  </style>
</head>
<body>
  <nav>
    <a href="/">Home</a>
    % if user:
      <span id="who">{{user.email}}</span>
      <form method="post" action="/logout">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button type="submit" id="logout">Log out</button>
      </form>
    % else:
      <a href="/login">Log in</a>
      <a href="/signup">Sign up</a>
    % end
  </nav>
  % for category, message in flashes:
    <p class="flash {{category}}" role="status">{{message}}</p>
  % end
  {{!base}}
</body>
</html>
